"""Views written the way Django's docs write them, plus a "your sessions" page."""

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from serversession.integrations.django import list_user_sessions, revoke_user_sessions


def index(request):
    return render(request, "index.html")


def user_login(request):
    if request.method == "POST":
        username = request.POST["username"]
        password = request.POST["password"]
        user = authenticate(request, username=username, password=password)
        if user is not None:
            login(request, user)
            return redirect("index")
    return render(request, "login.html")


@require_POST
def user_logout(request):
    logout(request)
    return redirect("index")


@require_POST
def visit(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return redirect("index")


@require_POST
def remember(request):
    """"Remember me" off: the cookie ends with the browser (set_expiry(0))."""
    request.session.set_expiry(0 if request.POST.get("until") == "browser-close" else None)
    return redirect("index")


@login_required
def sessions(request):
    if request.method == "POST":
        revoke_user_sessions(request.user, keep=request)
        return redirect("sessions")
    return render(request, "sessions.html", {"sessions": list_user_sessions(request.user, request)})

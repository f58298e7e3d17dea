"""URL configuration for mysite."""

from django.contrib import admin
from django.urls import path

from . import admin as _user_admin_actions  # noqa: F401
from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", views.user_login, name="login"),
    path("logout/", views.user_logout, name="logout"),
    path("visit/", views.visit, name="visit"),
    path("remember/", views.remember, name="remember"),
    path("sessions/", views.sessions, name="sessions"),
    path("admin/", admin.site.urls),
]

"""Adds serversession's "Sign out of all sessions" action to the user admin."""

from django.contrib.auth.admin import UserAdmin

from serversession.integrations.django.admin import revoke_sessions

UserAdmin.actions = [*UserAdmin.actions, revoke_sessions]

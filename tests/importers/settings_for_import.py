"""A Django settings module as a project has one, for ``django-settings:`` imports (see djangoapp.py)."""

import os

SECRET_KEY = os.environ["APP_SECRET"]
SECRET_KEY_FALLBACKS = ["an-older-key"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DB"]}}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

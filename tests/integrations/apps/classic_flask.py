"""The classic Flask sign-in app, as Flask's docs write it, plus the one serversession line.

Only the ``init_app`` line (and its imports) differs from the seed. It turns the
cookie's ``Secure`` flag off because the test speaks plain HTTP, and CSRF off
because this classic form, like Flask's own quickstart, carries no token (an app
that wants it renders ``{{ csrf_token() }}`` in its forms).
"""

import os

from flask import Flask, redirect, request, session, url_for

import serversession.integrations.flask

app = Flask(__name__)
app.secret_key = 'supersecretkey'
serversession.integrations.flask.init_app(app, store=os.environ["SS_STORE"], cookie_secure=False, csrf=False)


@app.route('/')
def index():
    if 'username' in session:
        return f'Logged in as {session["username"]}'
    return 'You are not logged in'


@app.route('/login', methods=['POST'])
def login():
    session['username'] = request.form['username']
    return redirect(url_for('index'))


@app.route('/logout')
def logout():
    session.pop('username', None)
    return redirect(url_for('index'))

"""The classic Flask sign-in app ported to Quart the way Quart's docs port it, plus the one
serversession line.

The port is Quart's usual one (``async def`` views, ``await request.form``); only
the ``init_app`` line (and its import) is added. It turns the cookie's ``Secure``
flag off because the test speaks plain HTTP, and CSRF off because this classic
form carries no token (an app that wants it renders ``{{ csrf_token() }}``).
"""

import os

from quart import Quart, redirect, request, session, url_for

from serversession.integrations import quart as serversession_quart

app = Quart(__name__)
app.secret_key = 'supersecretkey'
serversession_quart.init_app(app, store=os.environ["SS_STORE"], cookie_secure=False, csrf=False)


@app.route('/')
async def index():
    if 'username' in session:
        return f'Logged in as {session["username"]}'
    return 'You are not logged in'


@app.route('/login', methods=['POST'])
async def login():
    session['username'] = (await request.form)['username']
    return redirect(url_for('index'))


@app.route('/logout')
async def logout():
    session.pop('username', None)
    return redirect(url_for('index'))

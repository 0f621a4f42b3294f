"""Forms of the source interface. Every one carries a CSRF token (Flask-WTF)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length

from tipbox.codenames import MAX_CODENAME_CHARS


class NewCodenameForm(FlaskForm):
    """'I have saved my codename': the codename comes back with the server's MAC."""

    codename = HiddenField(validators=[DataRequired(), Length(max=MAX_CODENAME_CHARS)])
    mac = HiddenField(validators=[DataRequired(), Length(min=64, max=64)])
    # The flood defence's ticket and its worked-out answer (tipbox.flood), empty while
    # the site is quiet; checked by the view, which says what is wrong with them.
    ticket = HiddenField(validators=[Length(max=200)])
    solution = HiddenField(validators=[Length(max=20)])
    submit = SubmitField(_l("I have saved my codename: continue"))


class LoginForm(FlaskForm):
    codename = PasswordField(
        _l("Your codename"),
        validators=[DataRequired(_l("Enter your codename.")),
                    Length(max=MAX_CODENAME_CHARS,
                           message=_l("That is much longer than a codename."))],
        render_kw={"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"},
    )
    submit = SubmitField(_l("Continue"))


class LogoutForm(FlaskForm):
    submit = SubmitField(_l("Log out"))


class CsrfOnlyForm(FlaskForm):
    """No fields but the CSRF token: for buttons such as "Delete this reply"."""

"""Forms of the newsroom interface. Every one carries a CSRF token (Flask-WTF)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from tipbox.replies import MAX_REPLY_CHARS


class ConfirmForm(FlaskForm):
    """Passphrase and code: the admin pages' second look at who is at the keyboard (the
    session says whose account), and the log-in form's last two fields."""

    passphrase = PasswordField(_l("Passphrase"), validators=[DataRequired(), Length(max=512)],
                               render_kw={"autocomplete": "current-password"})
    code = StringField(_l("Two-factor code"),
                       validators=[DataRequired(), Regexp(r"^\s*\d{3}\s?\d{3}\s*$",
                                                          message=_l("Six digits."))],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})
    submit = SubmitField(_l("Confirm"))


class LoginForm(ConfirmForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "username", "autocapitalize": "off"})
    submit = SubmitField(_l("Log in"))


class ActionForm(FlaskForm):
    """A bare button: the CSRF token is all it carries."""


class ReplyForm(FlaskForm):
    text = TextAreaField(_l("Reply"), validators=[
        DataRequired(_l("Write a reply first.")),
        Length(max=MAX_REPLY_CHARS)])
    submit = SubmitField(_l("Encrypt and send reply"))


class ConfirmDeleteForm(FlaskForm):
    confirm = BooleanField(_l("Yes, delete it for good"),
                           validators=[DataRequired(_l("Tick the box to confirm."))])
    submit = SubmitField(_l("Delete"))


class PasteKeyForm(FlaskForm):
    key = TextAreaField(_l("Armored public key"), validators=[
        DataRequired(), Length(max=1024 * 1024)])
    submit = SubmitField(_l("Add as pending"))


class KeyCodeForm(FlaskForm):
    code = StringField(_l("Code from the challenge"), validators=[DataRequired(),
                                                                  Length(max=64)])
    submit = SubmitField(_l("Activate"))

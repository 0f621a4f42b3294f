"""The reader's language: which ones the site offers, how one is chosen, and the
locale-aware formatting of numbers, sizes and dates that the pages use.

Tor Browser asks every site for English, so ``Accept-Language`` is only the first guess;
the links of the language picker (no JavaScript) are how most sources reach their own
language. The choice lives in a cookie of its own holding one code from
:data:`LANGUAGES`, never in the server-side session: choosing a language must not create
a session row (and so a record) for a visitor who has none.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, redirect, request, url_for
from flask_babel import (
    Babel,
    format_date,
    format_datetime,
    format_decimal,
    get_locale,
    gettext,
    ngettext,
)
from werkzeug.wrappers import Response

import tipbox
from tipbox.i18n import N_

TRANSLATIONS_DIR = Path(tipbox.__file__).parent / "translations"
LANGUAGE_COOKIE = "tipbox_language"


@dataclass(frozen=True)
class Language:
    code: str  # the catalog's folder name and Babel's locale identifier
    tag: str  # BCP 47, for lang= and hreflang=
    name: str  # the language named in itself, as its readers look for it
    rtl: bool = False

    @property
    def dir(self) -> str:
        return "rtl" if self.rtl else "ltr"


# In the picker's order: the languages of the likeliest sources first, English last.
LANGUAGES = (
    Language("zh_Hans", "zh-Hans", "中文（简体）"),
    Language("zh_Hant", "zh-Hant", "中文（繁體）"),
    Language("ug", "ug", "ئۇيغۇرچە", rtl=True),
    Language("ar", "ar", "العربية", rtl=True),
    Language("fa", "fa", "فارسی", rtl=True),
    Language("ru", "ru", "Русский"),
    Language("tr", "tr", "Türkçe"),
    Language("es", "es", "Español"),
    Language("fr", "fr", "Français"),
    Language("pt_BR", "pt-BR", "Português (Brasil)"),
    Language("uk", "uk", "Українська"),
    Language("en", "en", "English"),
)
BY_CODE = {language.code: language for language in LANGUAGES}
DEFAULT = BY_CODE["en"]

# Chinese tags that mean the traditional script (Taiwan, Hong Kong, Macao).
_TRADITIONAL = ("hant", "tw", "hk", "mo")


def match_tag(tag: str) -> Language | None:
    """The offered language for one ``Accept-Language`` tag (zh-CN, zh-TW, pt, ar-EG…)."""
    parts = tag.lower().replace("_", "-").split("-")
    if parts[0] == "zh":
        return BY_CODE["zh_Hant" if any(p in _TRADITIONAL for p in parts[1:]) else "zh_Hans"]
    if parts[0] == "pt":
        return BY_CODE["pt_BR"]  # the one Portuguese catalog; closer than English
    return BY_CODE.get(parts[0])


def chosen_language() -> Language:
    """The picker's choice if there is one, else the browser's best offered language."""
    chosen = BY_CODE.get(request.cookies.get(LANGUAGE_COOKIE, ""))
    if chosen is not None:
        return chosen
    for tag, _quality in request.accept_languages:
        found = match_tag(tag)
        if found is not None:
            return found
    return DEFAULT


def page_language() -> Language:
    return BY_CODE.get(str(get_locale() or ""), DEFAULT)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative address, which
    would make the picker an open redirect. No control character or space either:
    browsers drop tabs and line breaks from an address ("/<tab>/x" is "//x"), and a line
    break in the Location header fails the answer."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) \
            or any(ch <= " " or ch == "\x7f" for ch in target):
        return "/"
    return target


# Binary units, as the limits are set; the symbols are translated too (Russian and
# Ukrainian write КиБ, МиБ, ГиБ).
_UNITS = (N_("%(num)s KiB"), N_("%(num)s MiB"), N_("%(num)s GiB"), N_("%(num)s TiB"))


def format_size(size: int) -> str:
    """A size with the locale's digits and separators (2.0 GiB, 2,0 GiB, 2.0 ГиБ)."""
    if size < 1024:
        return str(ngettext("%(num)s byte", "%(num)s bytes", size))
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return str(gettext(unit, num=format_decimal(value, format="#,##0.0")))


def format_day(day: dt.date) -> str:
    """A day as the reader's locale writes it (12 Mar 2026, 2026年3月12日)."""
    return str(format_date(day, format="medium"))


def format_moment(moment: dt.datetime) -> str:
    """A date and time in the locale's short form, in UTC (the newsroom's audit log)."""
    return str(format_datetime(moment, format="short"))


def make_language_blueprint() -> Blueprint:
    bp = Blueprint("language", __name__)

    @bp.get("/language/<code>")
    def choose(code: str) -> Response:
        """Keep the choice and go back to the page the link was on."""
        response = redirect(safe_next(request.args.get("next")), code=303)
        if code in BY_CODE:
            # No Max-Age: the choice ends with the browser session, as Tor Browser's
            # "New Identity" expects. Strict and HttpOnly: no other site sets or reads it.
            response.set_cookie(LANGUAGE_COOKIE, code, httponly=True, samesite="Strict",
                                secure=request.is_secure)
        return response

    return bp


def picker_target() -> str:
    """Where a picker link returns to: this page if a GET can show it again, else home.
    A page that answered a POST (an error, the logged-out page) cannot be fetched again."""
    if request.method == "GET" and request.endpoint not in (None, "language.choose"):
        return request.full_path.rstrip("?")
    return "/"


def init_app(app: Flask) -> None:
    """Flask-Babel with our catalogs and selector, the picker's route and the page helpers."""
    Babel(app, locale_selector=lambda: chosen_language().code,
          default_translation_directories=str(TRANSLATIONS_DIR))
    app.register_blueprint(make_language_blueprint())
    app.add_template_filter(format_size, "size")
    app.add_template_filter(format_day, "day")
    app.add_template_filter(format_moment, "when")
    app.add_template_filter(format_decimal, "number")

    @app.context_processor
    def language_context() -> dict[str, object]:
        return {"page_language": page_language(), "languages": LANGUAGES,
                "language_url": lambda code: url_for("language.choose", code=code,
                                                     next=picker_target())}

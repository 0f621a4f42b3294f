"""The source guide at /guide: each reader's own translation with its lang and dir, the
English with a notice where there is none, a notice with a link to the English where a
translation is older than the English, and translations that keep the English's shape."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tipbox.config import REPO_ROOT, Settings
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.locales import BY_CODE, LANGUAGE_COOKIE, LANGUAGES
from tipbox.web.source import create_source_app
from tipbox.web.source.guide import GuideLibrary, Translation, block_structure, digest
from tipbox.web.source.guide_status import report

DOCS = REPO_ROOT / "docs"
ENGLISH = (DOCS / "source-guide.md").read_bytes().decode("utf-8")
TRANSLATED = sorted(path.stem for path in (DOCS / "source-guide").glob("*.md"))
NOT_TRANSLATED_NOTICE = "This guide is not translated yet."
STALE_NOTICE = "The English guide has changed since this translation was made"


def translation(code: str) -> Translation:
    return Translation.parse(code, (DOCS / "source-guide" / f"{code}.md").read_text("utf-8"))


def first_heading(markdown: str) -> str:
    return markdown.strip().splitlines()[0].removeprefix("# ")


def guide_page(client: FlaskClient, code: str, path: str = "/guide") -> str:
    client.set_cookie(LANGUAGE_COOKIE, code)
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def article_lang_dir(page: str) -> tuple[str, str]:
    found = re.search(r'<article class="card guide" lang="([^"]+)" dir="(ltr|rtl)">', page)
    assert found, "the guide's article says no lang and dir"
    return found.group(1), found.group(2)


def client_for(settings: Settings, guides: GuideLibrary) -> FlaskClient:
    app = create_source_app(settings, browser=BrowserEncryption.off("not under test"),
                            guides=guides)
    return app.test_client()


def test_every_offered_language_has_its_own_guide() -> None:
    offered = sorted(language.code for language in LANGUAGES if language.code != "en")
    assert offered == TRANSLATED


@pytest.mark.parametrize("code", TRANSLATED)
def test_a_reader_gets_the_guide_in_their_language_with_its_lang_and_dir(
        client: FlaskClient, code: str) -> None:
    page = guide_page(client, code)
    language = BY_CODE[code]
    assert article_lang_dir(page) == (language.tag, language.dir)
    assert f'<html lang="{language.tag}" dir="{language.dir}">' in page
    heading = str(GuideLibrary(ENGLISH, {}).english.html).split("\n")[0]
    assert heading not in page  # not the English h1
    assert f"<h1>{first_heading(translation(code).markdown)}</h1>" in page
    assert NOT_TRANSLATED_NOTICE not in page
    assert "<!--" not in page.split('<article class="card guide"')[1]  # the source line


def test_the_english_reader_gets_the_english_guide_without_a_notice(
        client: FlaskClient) -> None:
    page = guide_page(client, "en")
    assert article_lang_dir(page) == ("en", "ltr")
    assert f"<h1>{first_heading(ENGLISH)}</h1>" in page
    assert NOT_TRANSLATED_NOTICE not in page and STALE_NOTICE not in page


def test_a_language_without_a_translation_gets_the_english_marked_as_english_with_a_notice(
        settings: Settings) -> None:
    client = client_for(settings, GuideLibrary(ENGLISH, {}))
    page = guide_page(client, "ug")
    assert '<html lang="ug" dir="rtl">' in page
    assert article_lang_dir(page) == ("en", "ltr")
    assert f"<h1>{first_heading(ENGLISH)}</h1>" in page
    assert 'class="notice"' in page and STALE_NOTICE not in page


def test_a_translation_of_an_older_english_guide_is_shown_with_a_link_to_the_english(
        settings: Settings, tmp_path: Path) -> None:
    chinese = translation("zh_Hans").markdown
    docs = tmp_path / "docs"
    (docs / "source-guide").mkdir(parents=True)
    (docs / "source-guide.md").write_text(ENGLISH, "utf-8")
    made_from_this = f"<!-- source: sha256 {digest(ENGLISH)} -->\n{chinese}"
    (docs / "source-guide" / "zh_Hans.md").write_text(made_from_this, "utf-8")

    client = client_for(settings, GuideLibrary.load(docs))
    current = guide_page(client, "zh_Hans")
    assert f"<h1>{first_heading(chinese)}</h1>" in current
    assert STALE_NOTICE not in current and 'href="/guide/en"' not in current

    # Someone adds a sentence to the English guide; the Chinese is not updated yet.
    (docs / "source-guide.md").write_text(ENGLISH + "\nOne more thing.\n", "utf-8")
    client = client_for(settings, GuideLibrary.load(docs))
    stale = guide_page(client, "zh_Hans")
    assert article_lang_dir(stale) == ("zh-Hans", "ltr")
    assert f"<h1>{first_heading(chinese)}</h1>" in stale
    notice = re.search(r'<p class="notice"><a href="([^"]+)">([^<]+)</a></p>', stale)
    assert notice, "no link to the English guide"
    assert notice.group(1) == "/guide/en"
    english = guide_page(client, "zh_Hans", notice.group(1))
    assert article_lang_dir(english) == ("en", "ltr")
    assert '<html lang="zh-Hans" dir="ltr">' in english  # the site stays in Chinese
    assert "<p>One more thing.</p>" in english
    assert 'class="notice"' not in english


@pytest.mark.parametrize("code", TRANSLATED)
def test_a_translation_has_the_english_guides_sections_lists_and_commands(code: str) -> None:
    """Same blocks in the same order (headings, paragraphs, lists with as many items),
    and the same `code` spans, so a dropped section, item or command fails."""
    translated = translation(code).markdown
    assert block_structure(translated) == block_structure(ENGLISH)
    assert re.findall(r"`[^`]+`", translated) == re.findall(r"`[^`]+`", ENGLISH)


def test_the_structure_check_sees_a_dropped_section() -> None:
    without_step_3 = re.sub(r"## Step 3.*?(?=## )", "", ENGLISH, flags=re.S)
    assert block_structure(without_step_3) != block_structure(ENGLISH)
    assert block_structure(ENGLISH)[:3] == ["h1", "p", "p"]
    assert "ul×4" in block_structure(ENGLISH)


def test_a_translation_that_does_not_say_what_it_was_made_from_is_refused() -> None:
    with pytest.raises(ValueError, match="must start with the line"):
        GuideLibrary(ENGLISH, {"fr": "# Guide\n\nTexte.\n"})


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_guide_status_names_stale_translations_and_the_diff_since_they_were_made(
        tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "source-guide").mkdir(parents=True)
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.invalid")
    git(tmp_path, "config", "user.name", "test")
    (docs / "source-guide.md").write_text("# Guide\n\nText.\n", "utf-8")
    made_from = digest("# Guide\n\nText.\n")
    for code in ("es", "fr"):
        (docs / "source-guide" / f"{code}.md").write_text(
            f"<!-- source: sha256 {made_from} -->\n# Guía\n\nTexto.\n", "utf-8")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    first = git(tmp_path, "rev-parse", "HEAD")
    assert report(tmp_path) == ["es: up to date", "fr: up to date"]

    newer = "# Guide\n\nText.\n\nMore.\n"
    (docs / "source-guide.md").write_text(newer, "utf-8")
    git(tmp_path, "commit", "-q", "-am", "second")
    (docs / "source-guide" / "es.md").write_text(
        f"<!-- source: sha256 {digest(newer)} -->\n# Guía\n\nTexto.\n\nMás.\n", "utf-8")
    assert report(tmp_path) == [
        "es: up to date",
        "fr: STALE, the English changed since docs/source-guide/fr.md was made",
        f"    git diff {first} -- docs/source-guide.md",
    ]

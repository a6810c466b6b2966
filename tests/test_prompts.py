"""Prompt templates: every template's placeholders, versions, rendering and packaging."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

import prompts
from prompts import CANNOT_ANSWER, PromptError, load, names, parse

EXPECTED_PLACEHOLDERS = {
    "answer": {"question", "context", "cannot_answer", "max_sentences", "fence", "feedback"},
    "condense": {"history", "question"},
    "tldr": {"title", "abstract"},
    "digest": {"date", "groups"},
    "topic": {"titles"},
}
ROOT = Path(__file__).resolve().parent.parent


def _values(name: str) -> dict[str, str]:
    return {p: f"<{p} value>" for p in EXPECTED_PLACEHOLDERS[name]}


def test_names_lists_every_template() -> None:
    assert names() == sorted(EXPECTED_PLACEHOLDERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PLACEHOLDERS))
def test_template_placeholders_version_and_roles(name: str) -> None:
    prompt = load(name)
    assert prompt.name == name
    assert isinstance(prompt.version, int) and prompt.version >= 1
    assert prompt.key == f"{name}@{prompt.version}"
    assert prompt.placeholders == EXPECTED_PLACEHOLDERS[name]
    roles = [role for role, _ in prompt.messages]
    assert roles == ["system", "user"]
    assert all(text.strip() for _, text in prompt.messages)


@pytest.mark.parametrize("name", sorted(EXPECTED_PLACEHOLDERS))
def test_render_with_all_values(name: str) -> None:
    values = _values(name)
    rendered = load(name).render(**values)
    assert [role for role, _ in rendered] == ["system", "user"]
    text = "\n".join(content for _, content in rendered)
    for value in values.values():
        assert value in text
    for placeholder in EXPECTED_PLACEHOLDERS[name]:
        assert f"{{{placeholder}}}" not in text


@pytest.mark.parametrize("name", sorted(EXPECTED_PLACEHOLDERS))
def test_render_missing_or_unknown_value_fails(name: str) -> None:
    values = _values(name)
    dropped = sorted(values)[0]
    missing = {k: v for k, v in values.items() if k != dropped}
    with pytest.raises(PromptError, match=f"missing values \\['{dropped}'\\]"):
        load(name).render(**missing)
    with pytest.raises(PromptError, match="unknown \\['surprise'\\]"):
        load(name).render(**values, surprise="x")


def test_answer_prompt_carries_the_refusal_sentinel_and_sources() -> None:
    rendered = dict(
        load("answer").render(
            question="What is GVGEN?",
            context="[1] GVGEN (arXiv 2403.12957)\nGVGEN generates 3D Gaussians.",
            cannot_answer=CANNOT_ANSWER,
            max_sentences="6",
            fence="f3nc3",
            feedback="",
        )
    )
    assert CANNOT_ANSWER in rendered["system"]
    assert "at most 6 sentences" in rendered["system"]
    # the request's random fence is named in the system message, so a source cannot fake it
    assert (
        "<<<SOURCE n f3nc3>>>" in rendered["system"] and "<<<END n f3nc3>>>" in rendered["system"]
    )
    assert rendered["user"].startswith("Sources:\n[1] GVGEN")
    assert rendered["user"].endswith("Question: What is GVGEN?")


def test_values_are_not_expanded_again_and_other_braces_are_literal() -> None:
    # an abstract that contains a placeholder-like string or LaTeX stays as it is
    abstract = "We bound {title} and {abstract} by $O(n^{2})$ with {\\em care}."
    rendered = load("tldr").render(title="T", abstract=abstract)
    assert abstract in rendered[1][1]
    prompt = parse("p", '---\nversion: 2\n---\n## user\nJSON {"a": 1} {x} {Not_a_placeholder}\n')
    assert prompt.placeholders == {"x"}
    assert prompt.render(x="1") == [("user", 'JSON {"a": 1} 1 {Not_a_placeholder}')]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("## user\nhi\n", "missing the '---' header"),
        ("---\ndescription: x\n---\n## user\nhi\n", "needs 'version: <integer>'"),
        ("---\nversion: one\n---\n## user\nhi\n", "needs 'version: <integer>'"),
        ("---\nversion: 1\n---\nno sections\n", "'## system' / '## user' sections"),
        ("---\nversion: 1\n---\nstray text\n## user\nhi\n", "'## system' / '## user' sections"),
    ],
)
def test_malformed_templates(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse("bad", text)


def test_unknown_template_name() -> None:
    with pytest.raises(PromptError, match="no prompt template named 'nope'"):
        load("nope")


def test_templates_are_package_data() -> None:
    """The .md files live inside the `prompts` package and are declared as package data, so
    an installed (non-editable) paperbot finds them through importlib.resources."""
    package = resources.files(prompts)
    for name in EXPECTED_PLACEHOLDERS:
        resource = package / f"{name}.md"
        assert resource.is_file()
        assert resource.read_text(encoding="utf-8").startswith("---\nversion:")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]["prompts"]
    assert "*.md" in package_data

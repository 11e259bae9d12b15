import json
import re
import time

import pytest
import yaml

from deployments import podspec

HOSTILE_PATH_COMPONENTS = [
    "../etc",
    "..",
    "a/b",
    "ACME",
    "acme prod",
    "ａcme",  # fullwidth look-alike
    "acmе",  # Cyrillic e
    "-acme",
    "acme-",
    "",
    "x" * 10_000,
    "acme\nprod",
    "a" * 33,
]


@pytest.mark.parametrize("value", HOSTILE_PATH_COMPONENTS)
def test_path_component_rejects_hostile_value(value):
    with pytest.raises(ValueError):
        podspec.validate_path_component(value, "customer")


@pytest.mark.parametrize("value", ["acme", "a", "prod-2", "x" * 32, "0ops"])
def test_path_component_accepts_lowercase_names(value):
    assert podspec.validate_path_component(value, "customer") == value


@pytest.mark.parametrize(
    "value",
    ["ab", "1abc", "abc-", "Abc", "a_bc", "a" * 64, "x\ninstance_type: p5.48xlarge", "abc def", "ａbc"],
)
def test_instance_name_rejects_invalid_value(value):
    with pytest.raises(ValueError):
        podspec.validate_instance_name(value)


@pytest.mark.parametrize("value", ["abc", "a-b-c", "web1", "a" * 63])
def test_instance_name_accepts_valid_value(value):
    assert podspec.validate_instance_name(value) == value


@pytest.mark.parametrize("value", ["p5.48xlarge", "g5.xlarge", "t3.nano", "T3.MICRO", "", "t3.micro "])
def test_instance_type_outside_allowed_list_is_rejected(value):
    with pytest.raises(ValueError):
        podspec.validate_instance_type(value)


def test_default_instance_types_cover_t3_and_general_families_without_gpus():
    types = set(podspec.DEFAULT_INSTANCE_TYPES)
    assert {"t3.micro", "t3.2xlarge", "m5.large", "m6i.4xlarge", "c6i.xlarge", "r6i.2xlarge"} <= types
    assert not any(t.startswith(("p", "g", "inf", "trn")) for t in types)


def test_parse_rejects_yaml_injection_through_a_value():
    text = 'customer: acme\nenvironment: prod\ninstance_name: "x\\ninstance_type: p5.48xlarge"\n'
    text += "instance_type: t3.micro\nwaf_enabled: true\n"
    with pytest.raises(podspec.SpecError) as exc:
        podspec.parse(text)
    assert set(exc.value.errors) == {"instance_name"}


def test_parse_reports_every_bad_field():
    with pytest.raises(podspec.SpecError) as exc:
        podspec.parse(
            "customer: ACME\nenvironment: prod\ninstance_type: p5.48xlarge\nwaf_enabled: maybe\nx: 1\n"
        )
    assert set(exc.value.errors) == {"customer", "instance_name", "instance_type", "waf_enabled", "spec"}


@pytest.mark.parametrize(
    "text", ["", "just text", "- a\n- b\n", "customer: [unclosed", "!!python/object:os.system x"]
)
def test_parse_rejects_documents_that_are_not_a_spec_mapping(text):
    with pytest.raises(podspec.SpecError):
        podspec.parse(text)


def test_render_round_trips_and_quotes_values():
    spec = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.medium", True)
    text = podspec.render(spec)
    assert text == (
        "customer: acme\nenvironment: prod\ninstance_name: acme-prod-web\n"
        "instance_type: t3.medium\nwaf_enabled: true\n"
    )
    assert podspec.parse(text) == spec


def test_workflow_inputs_are_strings_with_waf_as_true_or_false():
    spec = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.medium", False)
    assert spec.workflow_inputs() == {
        "customer": "acme",
        "environment": "prod",
        "instance_name": "acme-prod-web",
        "instance_type": "t3.medium",
        "waf_enabled": "false",
    }


def test_diff_of_new_pod_adds_whole_file():
    after = podspec.render(podspec.PodSpec("acme", "dev", "acme-dev", "t3.micro", False))
    diff = podspec.diff(None, after)
    assert diff.startswith("--- /dev/null\n+++ b/spec.yml\n")
    assert "+instance_type: t3.micro\n" in diff


def test_diff_of_unchanged_spec_is_empty():
    text = podspec.render(podspec.PodSpec("acme", "dev", "acme-dev", "t3.micro", False))
    assert podspec.diff(text, text) == ""


# --- untrusted input: exact values, and parsing that cannot crash --------------------------------

VALID_SPEC = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.medium",
    "waf_enabled": True,
}
VALID_TEXT = podspec.render(podspec.PodSpec(**VALID_SPEC))
TEXT_FIELDS = ("customer", "environment", "instance_name", "instance_type")
# Characters a person cannot see; each once trailed "acme" past a `$`-anchored regex or could.
INVISIBLE = {
    "trailing newline": "{}\n",
    "leading newline": "\n{}",
    "carriage return": "{}\r",
    "CRLF": "{}\r\n",
    "tab": "{}\t",
    "NUL": "{}\x00",
    "escape": "\x1b[31m{}",
    "delete": "{}\x7f",
    "next line U+0085": "{}\x85",
    "line separator U+2028": "{}\u2028",
    "paragraph separator U+2029": "{}\u2029",
    "zero-width space": "{}\u200b",
    "zero-width joiner": "{}\u200d",
    "byte order mark": "\ufeff{}",
    "right-to-left override": "\u202e{}",
    "soft hyphen": "{}\u00ad",
}


@pytest.fixture(params=["libyaml", "pure-python"])
def loader(request, monkeypatch):
    """Each parse test runs with both loaders: the workflow's runner may lack libyaml."""
    if request.param == "pure-python":
        monkeypatch.setattr(podspec, "_SafeLoader", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    return request.param


def parse_error(text: str) -> podspec.SpecError:
    """The SpecError parse() gives for ``text``, which it must give in well under a second."""
    started = time.perf_counter()
    with pytest.raises(podspec.SpecError) as exc:
        podspec.parse(text)
    assert time.perf_counter() - started < 1.0
    return exc.value


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("template", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_invisible_character_in_a_value_is_refused_by_name(field, template):
    data = VALID_SPEC | {field: template.format(VALID_SPEC[field])}
    with pytest.raises(podspec.SpecError) as exc:
        podspec.validate(data)
    assert set(exc.value.errors) == {field}
    assert exc.value.errors[field].startswith(f"{field} must not contain ")
    assert "(U+" in exc.value.errors[field]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("acme\n", "customer must not contain a line break (U+000A)"),
        ("acme\r", "customer must not contain a carriage return (U+000D)"),
        ("acme\t", "customer must not contain a tab (U+0009)"),
        ("ac\x00me", "customer must not contain a NUL character (U+0000)"),
        ("acme\u2028", "customer must not contain a line separator (U+2028)"),
        ("ac\u200bme", "customer must not contain an invisible formatting character (U+200B)"),
    ],
)
def test_refused_character_is_named_in_words(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        podspec.validate_path_component(value, "customer")


@pytest.mark.parametrize("value", ["true\n", "\ntrue", "true\x00", "false\u200b", "True", " true"])
def test_waf_enabled_is_exactly_true_or_false(value):
    with pytest.raises(ValueError, match="waf_enabled must be true or false"):
        podspec.validate_waf_enabled(value)


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("template", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_escaped_invisible_character_in_a_spec_value_is_refused(loader, field, template):
    # Written as "\u000a" escapes in a double-quoted scalar: the text itself stays printable,
    # and YAML hands the characters themselves to validation.
    value = template.format(VALID_SPEC[field])
    quoted = '"' + "".join(c if c.isalnum() or c in ".-" else f"\\u{ord(c):04x}" for c in value) + '"'
    text = VALID_TEXT.replace(f"{field}: {VALID_SPEC[field]}\n", f"{field}: {quoted}\n")
    error = parse_error(text)
    assert set(error.errors) == {field}
    assert error.errors[field].startswith(f"{field} must not contain ")


@pytest.mark.parametrize(
    "char", ["\x00", "\x1b", "\x85", "\u2028", "\u2029", "\u200b", "\u202e", "\x0c", "\x0b"]
)
def test_raw_invisible_character_anywhere_in_spec_text_is_refused(loader, char):
    for text in (
        VALID_TEXT.replace("acme\n", f"acme{char}\n"),
        f"# a comment{char}\n{VALID_TEXT}",
        VALID_TEXT + char,
    ):
        error = parse_error(text)
        assert "spec.yml contains" in error.errors["spec"]
        assert f"U+{ord(char):04X}" in error.errors["spec"]


def nested(opening: str, closing: str, depth: int) -> str:
    return f"customer: {opening * depth}x{closing * depth}\n"


DEEP = {
    # A few tens of KiB of brackets crashed a gunicorn worker inside libyaml (SIGSEGV).
    "list 64 KiB": nested("[", "]", 32_000),
    "flow mapping 60 KiB": nested("{a: ", "}", 12_000),
    "mixed 40 KiB": nested("[{a: ", "}]", 8_000),
    "list just under the size limit": nested("[", "]", 2_000),
    "flow mapping just under the size limit": nested("{a: ", "}", 800),
    "unclosed list": "customer: " + "[" * 4_000,
    "unclosed mapping": "customer: " + "{a: " * 1_000,
    "block sequences": "- " * 2_000 + "x\n",
    "explicit keys": "? " * 2_000 + "x\n",
    "block mappings": "".join(f"{' ' * i}a:\n" for i in range(80)),
    "sequence of mappings": "".join(f"{'  ' * i}- a:\n" for i in range(40)),
    "three deep": "customer: [[x]]\n",
    "mapping in a list value": "customer:\n- a: b\n",
    "many small lists": "customer: [" + ", ".join(["[x]"] * 500) + "]\n",
    "brackets after a CR-only comment line": "# note\r" + "[" * 60 + "x" + "]" * 60 + "\n",
}


@pytest.mark.parametrize("text", DEEP.values(), ids=DEEP.keys())
def test_deep_nesting_is_refused_quickly_without_crashing(loader, text):
    error = parse_error(text)
    assert set(error.errors) == {"spec"}
    assert error.errors["spec"].startswith("spec.yml ")


def test_long_flow_sequence_is_a_field_error(loader):
    text = "customer: [" + ", ".join(["acme"] * 600) + "]\n"
    assert len(text) < podspec.MAX_SPEC_BYTES
    assert parse_error(text).errors["customer"] == "customer must be text"


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
ALIASES = {
    "billion laughs": BILLION_LAUGHS,
    "recursive alias": "customer: &a [*a]\n",
    "anchor on a value": VALID_TEXT.replace("customer: acme", "customer: &c acme"),
    "alias as a value": VALID_TEXT.replace("instance_name: acme-prod-web", "instance_name: *c"),
    "merge key": "base: &b {customer: acme}\n<<: *b\n",
}


@pytest.mark.parametrize("text", ALIASES.values(), ids=ALIASES.keys())
def test_anchors_and_aliases_are_refused(loader, text):
    error = parse_error(text)
    assert "anchor or alias" in error.errors["spec"] or "not valid YAML" in error.errors["spec"]


@pytest.mark.parametrize(
    "value",
    ["!!python/object/apply:os.system ['true']", "!!str acme", "!custom acme", "!!binary YWNtZQ==", "! acme"],
)
def test_tags_are_refused(loader, value):
    text = VALID_TEXT.replace("customer: acme", f"customer: {value}")
    assert "YAML tag" in parse_error(text).errors["spec"]


@pytest.mark.parametrize(
    "text",
    [VALID_TEXT + "---\n" + VALID_TEXT, "---\n" + VALID_TEXT + "...\n---\n", "--- a\n--- b\n"],
    ids=["two specs", "empty second document", "two scalars"],
)
def test_more_than_one_document_is_refused(loader, text):
    assert "more than one YAML document" in parse_error(text).errors["spec"]


@pytest.mark.parametrize(
    "text", ["~\n", "null\n", "42\n", "acme\n", "[a, b]\n", "- customer: acme\n", "# only a comment\n", "\n"]
)
def test_document_that_is_not_a_mapping_is_refused(loader, text):
    assert parse_error(text).errors == {"spec": "spec.yml must be a mapping of field: value"}


def test_field_given_twice_is_refused(loader):
    text = VALID_TEXT + "customer: globex\n"
    assert parse_error(text).errors == {"spec": "customer is given twice (lines 1 and 6)"}


def test_spec_of_exactly_the_size_limit_is_read(loader):
    text = VALID_TEXT + "#" * (podspec.MAX_SPEC_BYTES - len(VALID_TEXT) - 1) + "\n"
    assert len(text.encode()) == podspec.MAX_SPEC_BYTES
    assert podspec.parse(text) == podspec.PodSpec(**VALID_SPEC)


@pytest.mark.parametrize(
    "text",
    [
        VALID_TEXT + "#" * (podspec.MAX_SPEC_BYTES - len(VALID_TEXT)) + "\n",
        # Bytes, not characters: 2,100 two-byte characters are 4,200 bytes.
        VALID_TEXT + "# " + "é" * 2_100 + "\n",
        VALID_TEXT + "x" * 10_000_000,
    ],
    ids=["one byte over", "multi-byte", "10 MB"],
)
def test_spec_over_the_size_limit_is_refused(loader, text):
    assert parse_error(text).errors == {
        "spec": f"spec.yml is larger than {podspec.MAX_SPEC_BYTES} bytes; a spec is five short lines"
    }


def test_size_limit_is_a_few_kib():
    assert 1024 <= podspec.MAX_SPEC_BYTES <= 8192


@pytest.mark.parametrize(
    "text",
    [
        "# Managed by the pod portal [OPS-123]: edit with care - {really} & *truly* !\n" + VALID_TEXT,
        "\ufeff" + VALID_TEXT,
        VALID_TEXT.replace("\n", "\r\n"),
        "---\n" + VALID_TEXT + "...\n",
        VALID_TEXT.replace("acme-prod-web", "'acme-prod-web'  # the EC2 Name tag"),
        json.dumps(VALID_SPEC),
        "\n  \n" + VALID_TEXT.replace(": ", ":   ").replace("\n", "  \n"),
    ],
    ids=["comment", "bom", "crlf", "document markers", "quoted with comment", "json", "blank space"],
)
def test_ordinary_specs_still_parse(loader, text):
    assert podspec.parse(text) == podspec.PodSpec(**VALID_SPEC)


def test_unknown_keys_are_listed_short_and_visible(loader):
    text = (
        VALID_TEXT + "".join(f"extra{i}: 1\n" for i in range(8)) + '"evil\\u200b": 1\n' + "k" * 300 + ": 1\n"
    )
    message = parse_error(text).errors["spec"]
    assert message.startswith("unknown field(s): ")
    assert message.endswith(" and 5 more")
    assert "\u200b" not in message
    assert len(message) < 200


def test_yaml_syntax_error_says_where(loader):
    error = parse_error(VALID_TEXT.replace("customer: acme", "customer: [acme"))
    assert error.errors["spec"].startswith("not valid YAML: ")
    assert "line " in error.errors["spec"]

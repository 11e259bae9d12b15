import pytest

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

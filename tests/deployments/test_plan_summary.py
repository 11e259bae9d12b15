"""deployments.plan: the plan summary of a Terraform plan, read back from untrusted JSON.

``terraform show -json`` shapes here follow Terraform's JSON output format
(https://developer.hashicorp.com/terraform/internals/json-format): ``resource_changes[]`` with
``change.actions``, ``before``/``after``, ``after_unknown``, ``before_sensitive``/
``after_sensitive`` and ``replace_paths``. tests/infra/test_plan_apply.py summarizes real plans.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from deployments import plan, podspec
from fakegithub import terraform_model

BLOB = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
SECRET = "hunter2-do-not-show"


def resource_change(
    address: str,
    actions: list[str],
    before: object = None,
    after: object = None,
    *,
    type_: str | None = None,
    mode: str = "managed",
    **change: object,
) -> dict:
    return {
        "address": address,
        "mode": mode,
        "type": type_ or address.split(".")[-2],
        "name": address.split(".")[-1],
        "change": {
            "actions": actions,
            "before": before,
            "after": after,
            "after_unknown": change.pop("after_unknown", {}),
            "before_sensitive": change.pop("before_sensitive", {}),
            "after_sensitive": change.pop("after_sensitive", {}),
            **change,
        },
    }


def show(*changes: dict, version: str = "1.11.4") -> dict:
    return {"format_version": "1.2", "terraform_version": version, "resource_changes": list(changes)}


INSTANCE = "module.pod.aws_instance.this"
INSTANCE_BEFORE = {"instance_type": "t3.small", "tags": {"Name": "acme-prod-web"}, "public_ip": "54.1.2.3"}


def summary_of(*changes: dict, **kwargs) -> plan.PlanSummary:
    return plan.parse(plan.summarize(show(*changes), **kwargs))


def only(summary: plan.PlanSummary) -> plan.ResourceChange:
    (resource,) = summary.resources
    return resource


# --- summarize ---------------------------------------------------------------------------------


def test_new_resources_are_created_and_list_no_attributes():
    summary = summary_of(
        resource_change(INSTANCE, ["create"], None, {"instance_type": "t3.small"}),
        resource_change(
            "module.pod.aws_lb.this", ["create"], None, {"name": "x"}, after_unknown={"arn": True}
        ),
        pod="acme/prod",
    )
    assert [(r.address, r.action, r.changes) for r in summary.resources] == [
        (INSTANCE, "create", ()),
        ("module.pod.aws_lb.this", "create", ()),
    ]
    assert summary.counts == {"create": 2, "update": 0, "replace": 0, "delete": 0}
    assert summary.headline == "2 to add, 0 to change, 0 to replace, 0 to destroy"
    assert summary.pod == "acme/prod"
    assert summary.spec_blob is None
    assert summary.terraform_version == "1.11.4"
    assert not summary.destructive


def test_an_instance_type_change_is_an_update_in_place_with_before_and_after():
    after = {**INSTANCE_BEFORE, "instance_type": "t3.medium"}
    del after["public_ip"]
    resource = only(
        summary_of(
            resource_change(INSTANCE, ["update"], INSTANCE_BEFORE, after, after_unknown={"public_ip": True}),
            spec_blob=BLOB,
        )
    )
    assert resource.action == "update"
    assert resource.changes == (
        plan.AttributeChange("instance_type", "t3.small", "t3.medium"),
        plan.AttributeChange("public_ip", "54.1.2.3", "(known after apply)"),
    )


@pytest.mark.parametrize("actions", [["delete", "create"], ["create", "delete"]])
def test_both_orders_of_delete_and_create_are_a_replacement(actions):
    summary = summary_of(resource_change("module.pod.aws_lb.this", actions, {"name": "a"}, {"name": "b"}))
    assert only(summary).action == "replace"
    assert summary.counts == {"create": 0, "update": 0, "replace": 1, "delete": 0}
    assert summary.destructive


def test_a_replacement_marks_what_forces_it_and_leaves_out_the_new_ids_and_unset_values():
    before = {
        "name": "acme-prod-web-alb",
        "arn": "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/a/1",
        "enable_cross_zone_load_balancing": False,
        "tags": {"Name": "acme-prod-web-alb"},
    }
    after = {
        "name": "acme-prod-app-alb",
        "enable_cross_zone_load_balancing": None,
        "tags": {"Name": "acme-prod-app-alb"},
    }
    listener_before = {"load_balancer_arn": before["arn"], "port": 80}
    summary = summary_of(
        resource_change(
            "module.pod.aws_lb.this",
            ["delete", "create"],
            before,
            after,
            after_unknown={"arn": True},
            replace_paths=[["name"]],
        ),
        resource_change(
            "module.pod.aws_lb_listener.http",
            ["delete", "create"],
            listener_before,
            {"port": 80},
            after_unknown={"load_balancer_arn": True},
            replace_paths=[["load_balancer_arn"]],
        ),
    )
    lb, listener = summary.resources
    assert lb.changes == (
        plan.AttributeChange("name", "acme-prod-web-alb", "acme-prod-app-alb", forces_replacement=True),
        plan.AttributeChange("tags.Name", "acme-prod-web-alb", "acme-prod-app-alb"),
    )
    assert listener.changes == (
        plan.AttributeChange(
            "load_balancer_arn", before["arn"], "(known after apply)", forces_replacement=True
        ),
    )


def test_a_replace_path_into_a_block_marks_the_attributes_under_it():
    resource = only(
        summary_of(
            resource_change(
                INSTANCE,
                ["delete", "create"],
                {"root_block_device": [{"volume_size": 20, "encrypted": True}]},
                {"root_block_device": [{"volume_size": 10, "encrypted": True}]},
                replace_paths=[["root_block_device", 0, "volume_size"]],
            )
        )
    )
    assert resource.changes == (
        plan.AttributeChange("root_block_device[0].volume_size", "20", "10", forces_replacement=True),
    )


def test_deletes_are_counted_reads_and_no_ops_are_listed_but_not_counted():
    summary = summary_of(
        resource_change("module.pod.aws_wafv2_web_acl.this[0]", ["delete"], {"name": "w"}, None),
        resource_change(
            "module.pod.data.aws_ami.x", ["read"], None, {"id": "ami-1"}, mode="data", type_="aws_ami"
        ),
        resource_change("module.pod.aws_lb.this", ["no-op"], {"name": "a"}, {"name": "a"}),
    )
    assert [(r.address, r.action) for r in summary.resources] == [
        ("module.pod.aws_lb.this", "no-op"),
        ("module.pod.aws_wafv2_web_acl.this[0]", "delete"),
        ("module.pod.data.aws_ami.x", "read"),
    ]
    assert summary.counts == {"create": 0, "update": 0, "replace": 0, "delete": 1}
    assert [r.address for r in summary.changed] == ["module.pod.aws_wafv2_web_acl.this[0]"]
    assert summary.headline == "0 to add, 0 to change, 0 to replace, 1 to destroy"
    assert summary.destructive


def test_a_plan_without_changes_counts_zero():
    summary = plan.parse(plan.summarize(show()))
    assert summary.resources == ()
    assert summary.counts == {"create": 0, "update": 0, "replace": 0, "delete": 0}
    assert summary.changed == ()
    assert not summary.destructive
    # Terraform leaves resource_changes out when the configuration has no resources.
    assert plan.summarize({"terraform_version": "1.11.4"})["resources"] == []


@pytest.mark.parametrize(
    ("before", "after", "before_sensitive", "after_sensitive"),
    [
        ({"password": "old"}, {"password": SECRET}, {"password": True}, {"password": True}),
        ({"password": SECRET}, {"password": "new"}, {"password": True}, {"password": True}),
        ({"password": "plain"}, {"password": SECRET}, {}, {"password": True}),
        ({"user_data": {"k": SECRET}}, {"user_data": {"k": "x"}}, {"user_data": True}, {"user_data": True}),
        ({"env": [{"v": SECRET}]}, {"env": [{"v": "y"}]}, {"env": [{"v": True}]}, {"env": [{"v": True}]}),
        ({"settings": SECRET}, {"settings": {"deep": "x"}}, {"settings": True}, {"settings": {"deep": True}}),
    ],
    ids=["both", "before", "after-only", "whole-block", "in-a-list", "mixed-shapes"],
)
def test_sensitive_values_are_masked_and_never_copied(before, after, before_sensitive, after_sensitive):
    summary = plan.summarize(
        show(
            resource_change(
                INSTANCE,
                ["update"],
                before,
                after,
                before_sensitive=before_sensitive,
                after_sensitive=after_sensitive,
            )
        )
    )
    assert SECRET not in json.dumps(summary)
    changes = only(plan.parse(summary)).changes
    assert changes, "a change of a sensitive value is still a change"
    assert any("(sensitive)" in (c.before, c.after) for c in changes)


def test_a_sensitive_value_deeper_than_the_summary_reads_is_still_masked():
    deep: dict = {"v": SECRET}
    mask: dict = {"v": True}
    for _ in range(plan.MAX_DEPTH + 3):
        deep, mask = {"d": deep}, {"d": mask}
    summary = plan.summarize(
        show(resource_change(INSTANCE, ["update"], {"a": None}, {"a": deep}, after_sensitive={"a": mask}))
    )
    assert SECRET not in json.dumps(summary)
    (change,) = only(plan.parse(summary)).changes
    assert change.after == "(sensitive)"


def test_values_are_strings_json_for_the_rest_and_cut_to_200_characters():
    before = {"count": 1, "enabled": False, "ids": ["sg-1"], "note": None, "long": "a" * 500}
    after = {"count": 2, "enabled": True, "ids": ["sg-1", "sg-2"], "note": "set", "long": "b" * 500}
    changes = {
        c.attribute: c for c in only(summary_of(resource_change(INSTANCE, ["update"], before, after))).changes
    }
    assert (changes["count"].before, changes["count"].after) == ("1", "2")
    assert (changes["enabled"].before, changes["enabled"].after) == ("false", "true")
    assert (changes["ids[1]"].before, changes["ids[1]"].after) == ("null", "sg-2")
    assert (changes["note"].before, changes["note"].after) == ("null", "set")
    assert len(changes["long"].after) == plan.MAX_VALUE_CHARS
    assert changes["long"].after.endswith("\u2026")


def test_attribute_paths_name_blocks_list_items_and_odd_map_keys():
    before = {"tags": {"kubernetes.io/role": "a", "Name": "x"}, "ingress": [{"cidr_blocks": ["10.0.0.0/8"]}]}
    after = {"tags": {"kubernetes.io/role": "b", "Name": "y"}, "ingress": [{"cidr_blocks": ["10.0.0.0/16"]}]}
    changes = only(summary_of(resource_change(INSTANCE, ["update"], before, after))).changes
    assert [c.attribute for c in changes] == [
        "ingress[0].cidr_blocks[0]",
        "tags.Name",
        'tags["kubernetes.io/role"]',
    ]


def test_a_nested_value_past_the_depth_limit_is_shown_as_json():
    deep_before: dict = {"v": 1}
    deep_after: dict = {"v": 2}
    for _ in range(plan.MAX_DEPTH + 2):
        deep_before, deep_after = {"d": deep_before}, {"d": deep_after}
    (change,) = only(summary_of(resource_change(INSTANCE, ["update"], deep_before, deep_after))).changes
    assert change.attribute == ".".join(["d"] * plan.MAX_DEPTH)
    assert change.before == '{"d": {"d": {"v": 1}}}'


@pytest.mark.parametrize(
    "value",
    [
        "line1\nline2",
        "tab\there",
        "nul\x00",
        "\u202eevil",
        "zero\u200bwidth",
        "bell\x07",
        "del\x7f",
        "sep\u2028",
    ],
)
def test_control_and_invisible_characters_are_escaped_not_copied(value):
    (change,) = only(summary_of(resource_change(INSTANCE, ["update"], {"a": "x"}, {"a": value}))).changes
    assert change.after.isprintable()
    assert "\\u" in change.after


def test_an_address_with_control_characters_is_escaped():
    summary = summary_of(resource_change('module.pod.aws_lb.this["a\nb"]', ["create"], type_="aws_lb"))
    assert only(summary).address == 'module.pod.aws_lb.this["a\\u000ab"]'


def test_terraform_actions_the_summary_cannot_show_are_refused():
    with pytest.raises(plan.PlanSummaryError, match="forget"):
        plan.summarize(show(resource_change(INSTANCE, ["forget"], {"a": 1}, None)))


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {},
        {"terraform_version": "latest"},
        {"terraform_version": "1.11.4", "resource_changes": {}},
        {"terraform_version": "1.11.4", "resource_changes": ["x"]},
        {"terraform_version": "1.11.4", "resource_changes": [{"address": "a", "type": "t"}]},
        {"terraform_version": "1.11.4", "resource_changes": [{"address": "a", "type": "t", "change": {}}]},
        {
            "terraform_version": "1.11.4",
            "resource_changes": [{"type": "t", "change": {"actions": ["create"]}}],
        },
    ],
    ids=repr,
)
def test_malformed_show_output_is_a_plan_summary_error(bad):
    with pytest.raises(plan.PlanSummaryError):
        plan.summarize(bad)


def test_a_huge_plan_keeps_every_resource_and_its_counts_within_the_size_limit():
    changes = [
        resource_change(
            f"module.pod.aws_instance.n[{i}]",
            ["update"],
            {f"k{j}": "a" * 300 for j in range(plan.MAX_CHANGES + 50)},
            {f"k{j}": "b" * 300 for j in range(plan.MAX_CHANGES + 50)},
        )
        for i in range(40)
    ]
    raw = plan.summarize(show(*changes))
    assert len(json.dumps(raw).encode()) <= plan.MAX_SUMMARY_BYTES
    summary = plan.parse(raw)
    assert summary.counts["update"] == 40
    assert all(len(r.changes) <= plan.MAX_CHANGES for r in summary.resources)


def test_a_plan_of_more_than_1000_changed_resources_is_refused():
    changes = [
        resource_change(f"module.pod.aws_instance.n[{i}]", ["create"]) for i in range(plan.MAX_RESOURCES + 1)
    ]
    with pytest.raises(plan.PlanSummaryError, match="at most 1000"):
        plan.summarize(show(*changes))


def test_no_ops_give_way_when_a_plan_lists_more_than_1000_resources():
    changes = [resource_change(f"module.pod.aws_instance.n[{i}]", ["no-op"], {}, {}) for i in range(1200)]
    changes.append(resource_change("module.pod.aws_lb.this", ["create"]))
    summary = plan.parse(plan.summarize(show(*changes)))
    assert [r.address for r in summary.resources] == ["module.pod.aws_lb.this"]


def test_a_summary_round_trips_through_parse_and_to_json():
    raw = plan.summarize(
        show(
            resource_change(
                INSTANCE, ["update"], INSTANCE_BEFORE, {**INSTANCE_BEFORE, "instance_type": "t3.large"}
            ),
            resource_change(
                "module.pod.aws_lb.this",
                ["delete", "create"],
                {"name": "a"},
                {"name": "b"},
                replace_paths=[["name"]],
            ),
        ),
        pod="acme/prod",
        spec_blob=BLOB,
    )
    summary = plan.parse(raw)
    assert summary.to_json() == raw
    assert plan.parse(json.dumps(raw)) == summary
    assert plan.parse(json.dumps(raw).encode()) == summary


# --- parse: untrusted input ------------------------------------------------------------------


def valid() -> dict:
    return {
        "format": 1,
        "pod": "acme/prod",
        "terraform_version": "1.11.4",
        "spec_blob": BLOB,
        "resources": [
            {
                "address": INSTANCE,
                "type": "aws_instance",
                "action": "update",
                "changes": [{"attribute": "instance_type", "before": "t3.small", "after": "t3.medium"}],
            }
        ],
    }


def test_a_valid_summary_parses():
    summary = plan.parse(valid())
    assert summary == plan.PlanSummary(
        pod="acme/prod",
        terraform_version="1.11.4",
        spec_blob=BLOB,
        resources=(
            plan.ResourceChange(
                INSTANCE,
                "aws_instance",
                "update",
                (plan.AttributeChange("instance_type", "t3.small", "t3.medium"),),
            ),
        ),
    )
    assert summary.headline == "0 to add, 1 to change, 0 to replace, 0 to destroy"


def test_the_emulators_plan_model_gives_summaries_parse_accepts():
    acme = terraform_model.PodValues("acme", "prod", "acme-prod-web", "t3.small", True)
    renamed = terraform_model.PodValues("acme", "prod", "acme-prod-app", "t3.small", False)
    for before, after in [(None, acme), (acme, renamed), (renamed, acme)]:
        raw = terraform_model.plan_summary(before, after, spec_blob=BLOB)
        assert plan.parse(raw).to_json()["resources"] == raw["resources"]


def with_resource(**fields) -> dict:
    data = valid()
    data["resources"][0].update(fields)
    return data


def with_change(**fields) -> dict:
    data = valid()
    data["resources"][0]["changes"][0].update(fields)
    return data


def with_(**fields) -> dict:
    return {**valid(), **fields}


TOO_MANY_RESOURCES = with_(
    resources=[
        {"address": f"a.b[{i}]", "type": "aws_instance", "action": "no-op", "changes": []}
        for i in range(plan.MAX_RESOURCES + 1)
    ]
)
TOO_MANY_CHANGES = with_resource(
    changes=[{"attribute": f"a{i}", "before": "", "after": "x"} for i in range(plan.MAX_CHANGES + 1)]
)
# Every string within its limit, the whole over MAX_SUMMARY_BYTES.
TOO_LARGE_OBJECT = with_(
    resources=[
        {
            "address": f"module.pod.aws_instance.n[{i}]",
            "type": "aws_instance",
            "action": "update",
            "changes": [{"attribute": f"a{j}", "before": "x" * 200, "after": "y" * 200} for j in range(100)],
        }
        for i in range(10)
    ]
)

HOSTILE = [
    (b"{" * (plan.MAX_SUMMARY_BYTES + 1), "larger than 256 KiB"),
    ("x" * (plan.MAX_SUMMARY_BYTES + 1), "larger than 256 KiB"),
    ("\u00e9" * (plan.MAX_SUMMARY_BYTES // 2 + 1), "larger than 256 KiB"),
    (TOO_LARGE_OBJECT, "larger than 256 KiB"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (b'{"format": 1' + b", 1" * 5 + b"}", "not valid JSON"),
    (b'{"format": NaN}', "not a JSON value"),
    (b'{"format": Infinity}', "not a JSON value"),
    (b'{"format": 1, "format": 1}', "given twice"),
    (b'{"format": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[]", "must be an object"),
    (b"null", "must be an object"),
    (42, "not int"),
    (None, "not NoneType"),
    ([valid()], "not list"),
    ({k: v for k, v in valid().items() if k != "resources"}, "has no resources"),
    (with_(extra=1), "unknown field"),
    ({**valid(), 1: 2}, "unknown field"),
    (with_(format=2), "format 2 is not supported"),
    (with_(format="1"), "format must be a number"),
    (with_(format=True), "format must be a number"),
    (with_(pod="acme"), "not customer/environment"),
    (with_(pod="../etc/prod"), "not customer/environment"),
    (with_(pod="acme/prod/x"), "not customer/environment"),
    (with_(pod=["acme", "prod"]), "pod must be a string"),
    (with_(terraform_version="latest"), "not a version"),
    (with_(terraform_version=1.11), "terraform_version must be a string"),
    (with_(spec_blob="HEAD"), "not a git blob id"),
    (with_(spec_blob="A" * 40), "not a git blob id"),
    (with_(spec_blob=""), "not a git blob id"),
    (with_(resources={}), "resources must be a list"),
    (TOO_MANY_RESOURCES, "more than 1000 entries"),
    (with_(resources=[valid()["resources"][0]] * 2), "listed twice"),
    (with_(resources=["x"]), "resources[0] must be an object"),
    (with_resource(action="destroy"), "is not one of create, update"),
    (with_resource(action=None), "is not one of"),
    (with_resource(action=["update"]), "is not one of"),
    (with_resource(address=""), "address cannot be empty"),
    (with_resource(address="a" * (plan.MAX_ADDRESS_CHARS + 1)), "longer than 500"),
    (with_resource(address="module.pod\nfake"), "U+000A"),
    (with_resource(address="module.\u202epod"), "U+202E"),
    (with_resource(type="aws instance"), "not a resource type"),
    (with_resource(type=""), "not a resource type"),
    (with_resource(changes="x"), "changes must be a list"),
    (TOO_MANY_CHANGES, "more than 200 entries"),
    (with_change(before="x" * (plan.MAX_VALUE_CHARS + 1)), "longer than 200"),
    (with_change(after=7), "after must be a string"),
    (with_change(after=None), "after must be a string"),
    (with_change(attribute=""), "cannot be empty"),
    (with_change(before="\x00"), "U+0000"),
    (with_change(after="\ud800"), "U+D800"),
    (with_change(after="a\u2028b"), "U+2028"),
    (with_change(forces_replacement="yes"), "forces_replacement must be true or false"),
    (with_change(sensitive=True), "unknown field"),
]


@pytest.mark.parametrize(
    ("raw", "message"), HOSTILE, ids=lambda v: repr(v)[:60] if not isinstance(v, str) else v
)
def test_parse_refuses_hostile_input_with_a_clear_message(raw, message):
    with pytest.raises(plan.PlanSummaryError) as info:
        plan.parse(raw)
    assert message in str(info.value)
    assert len(str(info.value)) < 300, "an error message must not echo the input back"


def test_parse_accepts_a_new_pod_and_an_unnamed_pod():
    assert plan.parse(with_(spec_blob=None, pod="")).spec_blob is None
    assert plan.parse(with_(spec_blob="a" * 64)).spec_blob == "a" * 64


def test_forces_replacement_false_is_the_same_as_absent():
    assert plan.parse(with_change(forces_replacement=False)) == plan.parse(valid())


# --- markdown (the step summary) --------------------------------------------------------------


def test_markdown_has_the_headline_a_warning_when_destructive_and_a_row_per_change():
    summary = plan.parse(
        with_(
            resources=[
                {
                    "address": "module.pod.aws_lb.this",
                    "type": "aws_lb",
                    "action": "replace",
                    "changes": [
                        {"attribute": "name", "before": "a", "after": "b", "forces_replacement": True}
                    ],
                },
                {
                    "address": "module.pod.aws_security_group.alb",
                    "type": "aws_security_group",
                    "action": "no-op",
                    "changes": [],
                },
            ]
        )
    )
    text = plan.markdown(summary)
    assert text.startswith("### Terraform plan for `acme/prod`\n")
    assert "**0 to add, 0 to change, 1 to replace, 0 to destroy**" in text
    assert "This plan replaces or destroys resources." in text
    assert "| `module.pod.aws_lb.this` | replace | `name` (forces replacement) | `a` | `b` |" in text
    assert "aws_security_group" not in text, "unchanged resources are not rows"


def test_markdown_values_cannot_break_the_table_or_inject_html():
    summary = plan.parse(with_change(before="<img src=x onerror=alert(1)>|x", after="`code` | **bold**"))
    row = next(line for line in plan.markdown(summary).splitlines() if "instance_type" in line)
    assert row.count("|") - row.count("\\|") == 6, row
    assert "`<img src=x onerror=alert(1)>\\|x`" in row
    assert "`` `code` \\| **bold** ``" in row


def test_markdown_of_no_changes_says_so():
    text = plan.markdown(plan.parse(with_(resources=[])))
    assert "No changes" in text
    assert "|" not in text


# --- the checks of a saved plan ---------------------------------------------------------------


def saved_plan(tmp_path, *, lineage: str | None = "a1b2", serial: int = 4, lock: bytes | None = b"# lock\n"):
    path = tmp_path / "tfplan"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tfplan", b"\x00binary")
        if lineage is not None:
            state = {"version": 4, "serial": serial, "lineage": lineage, "resources": [{"secret": SECRET}]}
            archive.writestr("tfstate", json.dumps(state))
        if lock is not None:
            archive.writestr(".terraform.lock.hcl", lock)
    return str(path)


def state(lineage: str, serial: int) -> str:
    return json.dumps({"version": 4, "serial": serial, "lineage": lineage})


EMPTY_STATE = state("", 0)


def test_a_plan_of_the_current_state_is_current(tmp_path):
    plan.check_state(saved_plan(tmp_path), state("a1b2", 4), "acme/prod")
    plan.check_state(saved_plan(tmp_path, lineage="", serial=0), EMPTY_STATE, "acme/prod")
    plan.check_state(saved_plan(tmp_path, lineage="", serial=0), "", "acme/prod")


@pytest.mark.parametrize(
    ("planned", "now", "detail"),
    [
        (("a1b2", 4), state("a1b2", 5), "changed since the plan (serial 4 then, 5 now)"),
        (("a1b2", 4), state("ffff", 4), "was replaced since the plan"),
        (("a1b2", 4), EMPTY_STATE, "no longer exists"),
        # Planned before the pod's first apply; another run created the state since.
        (("", 0), state("c3d4", 1), "had no Terraform state when it was planned"),
    ],
)
def test_a_plan_of_a_state_that_moved_is_stale(tmp_path, planned, now, detail):
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_state(saved_plan(tmp_path, lineage=planned[0], serial=planned[1]), now, "acme/prod")
    assert info.value.title == "Stale plan"
    assert info.value.message.startswith("The plan is out of date \u2014 plan again. ")
    assert detail in info.value.message
    assert SECRET not in info.value.message


def test_a_file_that_is_not_a_saved_plan_is_not_found(tmp_path):
    junk = tmp_path / "tfplan"
    junk.write_bytes(b"not a zip")
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_state(str(junk), EMPTY_STATE, "acme/prod")
    assert info.value.title == "Plan not found"
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_state(saved_plan(tmp_path, lineage=None), EMPTY_STATE, "acme/prod")
    assert info.value.title == "Plan not found"


ACME = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.medium", True)


def planned(**spec) -> dict:
    return {
        "planned_values": {"outputs": {"spec": {"sensitive": False, "value": {**ACME.as_dict(), **spec}}}}
    }


def test_a_plan_of_this_runs_spec_passes():
    plan.check_spec(planned(), ACME)


def test_a_plan_of_another_spec_is_stale_and_says_what_differs():
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec(planned(instance_type="t3.large", waf_enabled=False), ACME)
    assert info.value.title == "Stale plan"
    assert "instance_type t3.large planned, t3.medium now" in info.value.message
    assert "waf_enabled false planned, true now" in info.value.message


def test_a_plan_of_another_pod_is_not_found():
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec(planned(customer="globex"), ACME)
    assert info.value.title == "Plan not found"
    assert "not a plan of acme/prod" in info.value.message


@pytest.mark.parametrize("show_json", [{}, {"planned_values": {"outputs": {}}}, {"planned_values": []}, []])
def test_a_plan_that_does_not_say_its_spec_is_stale(show_json):
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec(show_json, ACME)
    assert info.value.title == "Stale plan"


def test_the_summary_must_be_this_pods():
    summary = plan.parse(valid())
    plan.check_summary(summary, "acme/prod")
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_summary(summary, "globex/prod")
    assert info.value.title == "Plan not found"


def test_the_spec_on_the_branch_must_be_the_one_planned_against():
    summary = plan.parse(valid())
    plan.check_spec_blob(summary, BLOB)
    plan.check_spec_blob(plan.parse(with_(spec_blob=None)), None)
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec_blob(summary, "0" * 40)
    assert info.value.title == "Stale plan"
    changed = f"The spec.yml of acme/prod on the branch changed since the plan ({BLOB} then, {'0' * 40} now)"
    assert changed in info.value.message
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec_blob(plan.parse(with_(spec_blob=None)), BLOB)
    assert f"(no spec.yml then, {BLOB} now)" in info.value.message
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_spec_blob(summary, None)
    assert f"({BLOB} then, no spec.yml now)" in info.value.message


def test_annotations_escape_what_would_end_the_command():
    assert (
        plan.annotation("Stale plan", "a: b, 100%\nc\rd") == "::error title=Stale plan::a: b, 100%25%0Ac%0Dd"
    )
    assert plan.annotation("x:y,z", "m") == "::error title=x%3Ay%2Cz::m"


# --- the command line the workflow runs -------------------------------------------------------


def test_cli_summarize_writes_a_summary_parse_accepts(tmp_path, capsys):
    show_file = tmp_path / "show.json"
    show_file.write_text(json.dumps(show(resource_change(INSTANCE, ["create"], None, {"a": SECRET}))))
    out = tmp_path / "plan-summary.json"
    args = ["summarize", "--show-json", str(show_file), "--out", str(out), "--pod", "acme/prod"]
    assert plan.main([*args, "--spec-blob", BLOB]) == 0
    assert capsys.readouterr().out == "Plan: 1 to add, 0 to change, 0 to replace, 0 to destroy.\n"
    summary = plan.parse(out.read_bytes())
    assert (summary.pod, summary.spec_blob) == ("acme/prod", BLOB)
    assert SECRET not in out.read_text()
    assert plan.main(["markdown", "--summary", str(out)]) == 0
    assert "1 to add" in capsys.readouterr().out


def test_cli_summarize_of_bad_input_fails_with_a_message(tmp_path, capsys):
    show_file = tmp_path / "show.json"
    show_file.write_text("not json")
    out = tmp_path / "plan-summary.json"
    assert plan.main(["summarize", "--show-json", str(show_file), "--out", str(out)]) == 1
    assert "is not terraform show -json output" in capsys.readouterr().err
    assert not out.exists()


def test_cli_restores_the_lock_file_the_plan_was_made_with(tmp_path):
    out = tmp_path / ".terraform.lock.hcl"
    assert plan.main(["restore-lock-file", "--plan", saved_plan(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes() == b"# lock\n"


def test_cli_check_saved_prints_the_annotation_and_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUSTOMER", "acme")
    monkeypatch.setenv("ENVIRONMENT", "prod")
    summary = tmp_path / "plan-summary.json"
    summary.write_text(json.dumps(valid()))
    state_file = tmp_path / "state.json"
    state_file.write_text(state("a1b2", 9))
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(podspec.render(ACME))
    show_file = tmp_path / "show.json"
    show_file.write_text(json.dumps(planned()))
    args = ["check-saved", "--plan", saved_plan(tmp_path), "--summary", str(summary)]
    assert plan.main([*args, "--spec-blob", ""]) == 1
    assert "(3b18e512dba79e4c8300dd08aeb37f8e728b8dad then, no spec.yml now)" in capsys.readouterr().err
    args += ["--spec-blob", BLOB]
    assert plan.main(args) == 0
    assert "is current: 0 to add, 1 to change" in capsys.readouterr().out
    full = [*args, "--show-json", str(show_file), "--spec", str(spec_file), "--state", str(state_file)]
    assert plan.main(full) == 1
    err = capsys.readouterr().err
    assert err.startswith("::error title=Stale plan::The plan is out of date \u2014 plan again. ")
    assert "serial 4 then, 9 now" in err
    missing = [*args[:3], "--summary", str(tmp_path / "none.json")]
    assert plan.main(missing) == 1
    assert capsys.readouterr().err.startswith("::error title=Plan not found::")


def test_cli_reads_the_show_json_from_stdin(tmp_path, monkeypatch):
    data = json.dumps(show(resource_change(INSTANCE, ["delete"], {"a": 1}, None))).encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "s.json"
    assert plan.main(["summarize", "--show-json", "-", "--out", str(out)]) == 0
    assert plan.parse(out.read_bytes()).counts["delete"] == 1


# --- the configuration and the run a saved plan comes from -------------------------------------


def plan_with_config(tmp_path, files: dict[str, bytes], modules: object = None) -> str:
    path = tmp_path / "tfplan"
    index = (
        modules if modules is not None else [{"Key": "", "Dir": "."}, {"Key": "pod", "Dir": "modules/pod"}]
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tfconfig/modules.json", json.dumps(index))
        for name, data in files.items():
            archive.writestr(name, data)
    return str(path)


@pytest.fixture
def tf_dir(tmp_path):
    root = tmp_path / "terraform"
    (root / "modules" / "pod").mkdir(parents=True)
    (root / "main.tf").write_bytes(b'module "pod" {}\n')
    (root / "README.md").write_text("not configuration\n")
    (root / "modules" / "pod" / "main.tf").write_bytes(b'resource "x" "y" {}\n')
    return root


SNAPSHOT = {"tfconfig/m-/main.tf": b'module "pod" {}\n', "tfconfig/m-pod/main.tf": b'resource "x" "y" {}\n'}


def test_a_plan_of_the_configuration_on_disk_passes(tmp_path, tf_dir):
    plan.check_config(plan_with_config(tmp_path, SNAPSHOT), str(tf_dir))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda d: (d / "modules" / "pod" / "main.tf").write_bytes(b'resource "x" "z" {}\n'),
            "terraform/modules/pod/main.tf",
        ),
        (lambda d: (d / "extra.tf").write_bytes(b""), "terraform/extra.tf"),
        (lambda d: (d / "main.tf").unlink(), "terraform/main.tf"),
    ],
    ids=["changed", "added", "removed"],
)
def test_a_plan_of_another_configuration_is_stale(tmp_path, tf_dir, change, named):
    saved = plan_with_config(tmp_path, SNAPSHOT)
    change(tf_dir)
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_config(saved, str(tf_dir))
    assert info.value.title == "Stale plan"
    assert f"The Terraform configuration changed since the plan ({named})" in info.value.message


@pytest.mark.parametrize(
    "modules", [[], {}, "x", [{"Key": "", "Dir": "../../etc"}], [{"Dir": "."}]], ids=repr
)
def test_a_plan_without_a_readable_configuration_snapshot_is_not_found(tmp_path, tf_dir, modules):
    with pytest.raises(plan.SavedPlanError) as info:
        plan.check_config(plan_with_config(tmp_path, SNAPSHOT, modules=modules), str(tf_dir))
    assert info.value.title == "Plan not found"


WORKFLOW = ".github/workflows/deploy-pod.yml"


def run_object(**fields) -> dict:
    return {
        "id": 4242,
        "path": WORKFLOW,
        "event": "workflow_dispatch",
        "head_branch": "main",
        "status": "completed",
        "conclusion": "success",
        "repository": {"full_name": "demo/pods"},
        **fields,
    }


def check_run(run: dict) -> None:
    plan.check_plan_run(run, run_id="4242", repository="demo/pods", workflow=WORKFLOW, branch="main")


@pytest.mark.parametrize(
    "fields",
    [{}, {"path": f"{WORKFLOW}@main"}, {"path": f"demo/pods/{WORKFLOW}@refs/heads/main"}],
    ids=["path", "path@ref", "full path"],
)
def test_this_workflows_successful_dispatched_run_may_hand_over_a_plan(fields):
    check_run(run_object(**fields))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"event": "pull_request"}, 'started by "pull_request", not a dispatch'),
        ({"path": ".github/workflows/ci.yml"}, "of another workflow"),
        ({"path": None}, "of another workflow"),
        ({"head_branch": "feature"}, 'on "feature", not main'),
        ({"conclusion": "failure"}, 'not a success ("failure")'),
        ({"status": "in_progress", "conclusion": None}, 'not a success ("in_progress")'),
        ({"repository": {"full_name": "evil/fork"}}, "of another repository"),
        ({"repository": "demo/pods"}, "of another repository"),
    ],
    ids=repr,
)
def test_any_other_run_is_not_a_plan_run(fields, problem):
    with pytest.raises(plan.SavedPlanError) as info:
        check_run(run_object(**fields))
    assert info.value.title == "Plan not found"
    assert info.value.message.startswith(f"Run 4242 is not a plan run of {WORKFLOW} on main: ")
    assert problem in info.value.message


def dispatched_plan_run(gh, *, complete: bool = True) -> int:
    inputs = {**ACME.workflow_inputs(), "request_id": "", "action": "plan", "plan_run_id": ""}
    run = gh.create_run(inputs, {"login": "fake-user"})
    if complete:
        gh.complete_run(run.id, conclusion=None)
    return run.id


def test_the_run_is_read_from_github_over_http(fakegithub):
    run_id = str(dispatched_plan_run(fakegithub))
    run = plan.fetch_run(fakegithub.api_url, fakegithub.repo, run_id, "test-token")
    assert run["id"] == int(run_id)
    check_run(run)


def test_a_run_github_does_not_know_is_not_found(fakegithub):
    with pytest.raises(plan.SavedPlanError) as info:
        plan.fetch_run(fakegithub.api_url, fakegithub.repo, "987654321", "test-token")
    assert info.value.title == "Plan not found"
    assert info.value.message == "Run 987654321 does not exist in demo/pods."


def test_github_failing_is_an_error_not_a_verdict(fakegithub):
    with pytest.raises(OSError, match="GitHub answered 401"):
        plan.fetch_run(fakegithub.api_url, fakegithub.repo, "1", "wrong-token")


def test_cli_check_run_refuses_a_plan_run_still_running(fakegithub, monkeypatch, capsys):
    run_id = dispatched_plan_run(fakegithub, complete=False)
    environ = {
        "GITHUB_API_URL": fakegithub.api_url,
        "GITHUB_REPOSITORY": fakegithub.repo,
        "GITHUB_WORKFLOW_REF": f"{fakegithub.repo}/{WORKFLOW}@refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GH_TOKEN": "test-token",
        "PLAN_RUN_ID": str(run_id),
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert plan.main(["check-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"::error title=Plan not found::Run {run_id} is not a plan run of {WORKFLOW} on main: "
    )
    assert "test-token" not in err
    fakegithub.complete_run(run_id, conclusion=None)
    assert plan.main(["check-run"]) == 0
    assert f"Run {run_id} is a plan run of {WORKFLOW} on main." in capsys.readouterr().out

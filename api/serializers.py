"""What the API reads and answers. Input fields carry only their JSON types: the rules are the
deploy form's (deployments.forms.DeploymentForm, podspec's), applied by the view."""

from dataclasses import asdict

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments import plan, podspec
from deployments.models import DeploymentEvent, DeploymentRequest


class DeploymentInputSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=podspec.MAX_VALUE_LENGTH, trim_whitespace=False)
    environment = serializers.CharField(max_length=podspec.MAX_VALUE_LENGTH, trim_whitespace=False)
    instance_name = serializers.CharField(max_length=podspec.MAX_VALUE_LENGTH, trim_whitespace=False)
    instance_type = serializers.CharField(max_length=podspec.MAX_VALUE_LENGTH, trim_whitespace=False)
    waf_enabled = serializers.BooleanField(default=False)
    expected_spec_sha = serializers.RegexField(
        r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$",
        required=False,
        help_text="The spec.yml blob (the pod's `sha`) your values were written against: if spec.yml "
        "changed since, the request is refused (409) instead of overwriting that change.",
    )
    mode = serializers.ChoiceField(
        choices=DeploymentRequest.Mode.choices,
        required=False,
        help_text="edit: the pod must exist; new: it must not. Omitted: edit if the pod exists, else new.",
    )


class ReviewInputSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = DeploymentEvent
        fields = ["at", "source", "actor", "from_status", "to_status", "message"]


class AttributeChangeSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    before = serializers.CharField()
    after = serializers.CharField()
    forces_replacement = serializers.BooleanField()


class ResourceChangeSerializer(serializers.Serializer):
    address = serializers.CharField()
    type = serializers.CharField()
    action = serializers.CharField()
    changes = AttributeChangeSerializer(many=True)


class PlanSerializer(serializers.Serializer):
    pod = serializers.CharField()
    terraform_version = serializers.CharField()
    spec_blob = serializers.CharField(allow_null=True)
    headline = serializers.CharField(help_text="'1 to add, 1 to change, 0 to replace, 0 to destroy'")
    counts = serializers.DictField(child=serializers.IntegerField())
    resources = ResourceChangeSerializer(many=True)


class RequestSummarySerializer(serializers.ModelSerializer):
    pod = serializers.CharField(read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = DeploymentRequest
        fields = [
            "id",
            "url",
            "page_url",
            "pod",
            "status",
            "conclusion",
            "requested_by",
            "created_at",
            "completed_at",
            "run_url",
        ]

    def get_url(self, obj: DeploymentRequest) -> str:
        return self._absolute(f"/api/v1/requests/{obj.pk}/")

    def get_page_url(self, obj: DeploymentRequest) -> str:
        return self._absolute(obj.get_absolute_url())

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class RequestListSerializer(serializers.Serializer):
    requests = RequestSummarySerializer(many=True)


class RequestSerializer(RequestSummarySerializer):
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    applied_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    plan_summary = serializers.SerializerMethodField()
    inputs = serializers.DictField(child=serializers.CharField(), read_only=True)
    events = EventSerializer(many=True, read_only=True)

    class Meta(RequestSummarySerializer.Meta):
        fields = [
            *RequestSummarySerializer.Meta.fields,
            "customer",
            "environment",
            "mode",
            "instance_name",
            "instance_type",
            "waf_enabled",
            "flow",
            "approval_required",
            "idempotency_key",
            "inputs",
            "error_type",
            "error_message",
            "dispatched_at",
            "started_at",
            "updated_at",
            "run_id",
            "run_attempt",
            "plan_run_id",
            "plan_run_url",
            "plan_summary",
            "planned_at",
            "expires_at",
            "reviewed_by",
            "reviewed_at",
            "review_comment",
            "applied_by",
            "spec_before",
            "spec_after",
            "events",
        ]

    @extend_schema_field(PlanSerializer(allow_null=True))
    def get_plan_summary(self, obj: DeploymentRequest) -> dict | None:
        """What Terraform will do, as the request page shows it (checked again when read)."""
        if obj.plan_summary is None:
            return None
        try:
            summary = plan.parse(obj.plan_summary)
        except plan.PlanSummaryError:
            return None
        return {**asdict(summary), "counts": summary.counts, "headline": summary.headline}


class PodSpecSerializer(serializers.Serializer):
    customer = serializers.CharField()
    environment = serializers.CharField()
    instance_name = serializers.CharField()
    instance_type = serializers.CharField()
    waf_enabled = serializers.BooleanField()


class PodSerializer(serializers.Serializer):
    """A pod of the inventory: its spec (null when invalid or not loaded yet) and last request."""

    customer = serializers.CharField()
    environment = serializers.CharField()
    path = serializers.CharField()
    sha = serializers.CharField(help_text="The spec.yml blob: send it back as expected_spec_sha.")
    url = serializers.SerializerMethodField()
    valid = serializers.BooleanField(source="is_valid")
    loaded = serializers.BooleanField()
    error = serializers.CharField()
    spec = PodSpecSerializer(allow_null=True)
    last_deployment = serializers.SerializerMethodField()

    def get_url(self, pod) -> str:
        path = f"/api/v1/pods/{pod.customer}/{pod.environment}/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_last_deployment(self, pod) -> dict | None:
        latest = self.context.get("activity", {}).get(pod.key)
        return RequestSummarySerializer(latest, context=self.context).data if latest else None


class PodListSerializer(serializers.Serializer):
    pods = PodSerializer(many=True)
    truncated = serializers.BooleanField(help_text="GitHub cut the tree short: some pods may be missing.")
    incomplete = serializers.BooleanField(help_text="Some specs are not loaded yet (rate-limit reserve).")
    allowed_instance_types = serializers.ListField(child=serializers.CharField())

    @staticmethod
    def build(listing, *, activity: dict, request) -> dict:
        context = {"request": request, "activity": activity}
        return {
            "pods": PodSerializer(listing.pods, many=True, context=context).data,
            "truncated": listing.truncated,
            "incomplete": listing.incomplete,
            "allowed_instance_types": list(settings.ALLOWED_INSTANCE_TYPES),
        }


class ErrorSerializer(serializers.Serializer):
    """Every error: the seed's error types, the pages' HTTP statuses."""

    error_type = serializers.ChoiceField(
        choices=[
            "validation",
            "not_found",
            "conflict",
            "forbidden",
            "service_unavailable",
            "api_error",
            "server_error",
        ]
    )
    title = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False, help_text="Per field."
    )
    request = serializers.DictField(required=False, help_text="The request the error concerns.")
    holder = serializers.DictField(required=False, help_text="The active request that holds the pod.")
    expected_spec_sha = serializers.CharField(required=False, help_text="Spec Changed: the version you sent.")
    current_spec_sha = serializers.CharField(
        required=False, allow_null=True, help_text="Spec Changed: the version in git now (null: none)."
    )

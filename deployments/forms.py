import re
import uuid

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from . import inventory, podspec
from .models import DeploymentRequest


class DeploymentForm(forms.Form):
    """Edit or create a pod. The field rules are podspec's, shared with the deploy workflow.

    ``clean()`` also checks the pod against the ``listing`` the view hands in: a new pod that
    already exists is a ``duplicate_pod`` error, an edited pod that does not exist an
    ``unknown_pod`` error. The form itself never asks GitHub.
    """

    customer = forms.CharField(max_length=podspec.MAX_VALUE_LENGTH, strip=False)
    environment = forms.CharField(max_length=podspec.MAX_VALUE_LENGTH, strip=False)
    instance_name = forms.CharField(max_length=podspec.MAX_VALUE_LENGTH, strip=False)
    instance_type = forms.CharField(max_length=podspec.MAX_VALUE_LENGTH, widget=forms.Select)
    waf_enabled = forms.BooleanField(required=False, label="WAF enabled")
    mode = forms.ChoiceField(choices=DeploymentRequest.Mode.choices, widget=forms.HiddenInput)
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
    # The blob SHA of the spec.yml the operator saw when the form was opened (empty for a new pod):
    # a deploy against any other version is refused (lost-update protection).
    expected_spec_sha = forms.RegexField(
        regex=re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$"), required=False, widget=forms.HiddenInput
    )
    # Where the values come from when they are not typed: an earlier request of the pod ("Redeploy
    # this spec") or a commit of its spec.yml ("Roll back to this version").
    redeploy_of = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    source_commit = forms.RegexField(
        regex=re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$"), required=False, widget=forms.HiddenInput
    )

    def __init__(self, *args, listing: inventory.Listing | None = None, **kwargs):
        kwargs.setdefault("initial", {})
        kwargs["initial"].setdefault("idempotency_key", uuid.uuid4())
        super().__init__(*args, **kwargs)
        self.listing = listing
        self.pod: inventory.Pod | None = None
        self.redeployed: DeploymentRequest | None = None
        self.fields["instance_type"].widget.choices = [(t, t) for t in settings.ALLOWED_INSTANCE_TYPES]
        if self.initial.get("mode") == DeploymentRequest.Mode.EDIT or self.data.get("mode") == "edit":
            for name in ("customer", "environment"):
                self.fields[name].widget.attrs["readonly"] = True

    def _rule(self, name, check, *args):
        try:
            return check(*args)
        except ValueError as exc:
            # podspec names the field as the workflow does (instance_name); the form says its label.
            message = str(exc)
            if message.startswith(f"{name} "):
                message = f"{self[name].label}{message[len(name) :]}"
            raise ValidationError(message, code="invalid") from None

    def clean_customer(self):
        return self._rule(
            "customer", podspec.validate_path_component, self.cleaned_data["customer"], "customer"
        )

    def clean_environment(self):
        return self._rule(
            "environment", podspec.validate_path_component, self.cleaned_data["environment"], "environment"
        )

    def clean_instance_name(self):
        return self._rule("instance_name", podspec.validate_instance_name, self.cleaned_data["instance_name"])

    def clean_instance_type(self):
        return self._rule(
            "instance_type",
            podspec.validate_instance_type,
            self.cleaned_data["instance_type"],
            settings.ALLOWED_INSTANCE_TYPES,
        )

    def clean(self):
        data = super().clean()
        if self.errors or data is None:
            return data
        customer, environment = data["customer"], data["environment"]
        if self.listing is None:
            raise TypeError("A bound DeploymentForm needs the pod listing to validate against.")
        self.pod = self.listing.by_key.get(f"{customer}/{environment}")
        if data["mode"] == DeploymentRequest.Mode.NEW and self.pod:
            raise ValidationError(f"Pod {customer}/{environment} already exists.", code="duplicate_pod")
        if data["mode"] == DeploymentRequest.Mode.EDIT and not self.pod:
            raise ValidationError(f"Pod {customer}/{environment} does not exist.", code="unknown_pod")
        if data.get("redeploy_of"):
            self.redeployed = DeploymentRequest.objects.filter(
                pk=data["redeploy_of"], customer=customer, environment=environment
            ).first()
            if self.redeployed is None:
                raise ValidationError(
                    f"Request #{data['redeploy_of']} is not a request of {customer}/{environment}.",
                    code="unknown_request",
                )
        if self.pod and not self.pod.loaded:
            raise ValidationError(
                f"The current spec of {customer}/{environment} is not loaded yet: GitHub's rate limit is "
                "low and kept for deployments. Try again in a few minutes.",
                code="not_loaded",
            )
        return data

    @property
    def spec(self) -> podspec.PodSpec:
        data = self.cleaned_data
        return podspec.PodSpec(**{field: data[field] for field in podspec.FIELDS})

    @property
    def spec_before(self) -> str | None:
        return self.pod.text if self.pod else None

    @property
    def expected_sha(self) -> str | None:
        """The spec.yml blob the operator's values were written against: the SHA the form carried,
        NO_SPEC for a new pod (spec.yml must not exist), None for an edit form without one (then
        the pod's spec as the portal sees it now is the one expected)."""
        if self.cleaned_data["mode"] == DeploymentRequest.Mode.NEW:
            return inventory.NO_SPEC
        return self.cleaned_data.get("expected_spec_sha") or None

    @property
    def is_unchanged(self) -> bool:
        return bool(self.pod and self.pod.spec == self.spec)

    @classmethod
    def for_values(
        cls,
        pod: inventory.Pod | None,
        spec: podspec.PodSpec,
        *,
        redeploy_of: DeploymentRequest | None = None,
        source_commit: str = "",
    ) -> "DeploymentForm":
        """The form of an earlier request's (or git version's) values against the pod as it is now
        (a new idempotency key): what "Redeploy this spec" and "Roll back" post to the preview."""
        initial = {
            **spec.as_dict(),
            "mode": "edit" if pod else "new",
            "expected_spec_sha": pod.sha if pod else "",
            "redeploy_of": redeploy_of.pk if redeploy_of else None,
            "source_commit": source_commit,
        }
        return cls(initial=initial)

    @classmethod
    def for_pod(cls, pod: inventory.Pod) -> "DeploymentForm":
        """The edit form, prefilled from the pod's spec (or what can be read of an invalid one)."""
        initial = {
            "customer": pod.customer,
            "environment": pod.environment,
            "mode": "edit",
            "expected_spec_sha": pod.sha,
        }
        if pod.spec:
            initial |= pod.spec.as_dict()
        return cls(initial=initial)

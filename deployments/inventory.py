"""The pod inventory: every spec.yml under SPECS_PATH, listed cheaply.

One git-tree call lists every spec blob with its SHA. Blobs are content-addressed, so their
text is cached by SHA forever in Django's cache (shared by all workers), and only blobs not
seen before are fetched. The tree call carries the last ETag: an unchanged repository answers
304, which costs no rate limit, and the parsed inventory is served from the cache.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from . import github, podspec

# Parallel blob fetches for a cold cache; the rest of the time nothing is fetched.
BLOB_FETCH_WORKERS = 8


@dataclass(frozen=True)
class Pod:
    customer: str
    environment: str
    path: str
    sha: str
    text: str
    spec: podspec.PodSpec | None
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.customer}/{self.environment}"

    @property
    def is_valid(self) -> bool:
        return self.spec is not None


def _cache_key() -> str:
    config = "|".join(
        [settings.GITHUB_API_URL, settings.GH_REPO, settings.DEPLOY_REF, settings.SPECS_PATH]
        + sorted(settings.ALLOWED_INSTANCE_TYPES)
    )
    return "inventory:v1:" + hashlib.sha256(config.encode()).hexdigest()[:32]


def list_pods(*, revalidate: bool = True) -> list[Pod]:
    """Every pod, sorted by customer then environment.

    ``revalidate=False`` trusts the last listing when there is one (no GitHub call at all);
    the deploy step uses it so that the dispatch is its only GitHub request.
    """
    key = _cache_key()
    cached = cache.get(key)
    if cached and not revalidate:
        return cached["pods"]
    tree = github.get_spec_tree(etag=cached["etag"] if cached else None)
    if tree is None:  # 304: nothing changed since the cached listing
        return cached["pods"]
    previous = {(pod.path, pod.sha): pod for pod in cached["pods"]} if cached else {}
    pods = _build(tree.entries, previous)
    cache.set(key, {"etag": tree.etag, "pods": pods}, timeout=None)
    return pods


def get_pod(customer: str, environment: str, *, revalidate: bool = True) -> Pod | None:
    for pod in list_pods(revalidate=revalidate):
        if pod.customer == customer and pod.environment == environment:
            return pod
    return None


def _build(entries: tuple[github.TreeEntry, ...], previous: dict[tuple[str, str], Pod]) -> list[Pod]:
    prefix_parts = len(settings.SPECS_PATH.split("/"))
    wanted = []
    for entry in entries:
        parts = entry.path.split("/")[prefix_parts:]
        if len(parts) == 3:  # <customer>/<environment>/spec.yml
            wanted.append((entry, parts[0], parts[1]))
    texts = _blob_texts({entry.sha for entry, _, _ in wanted if (entry.path, entry.sha) not in previous})
    pods = [
        previous.get((entry.path, entry.sha)) or _parse(entry, customer, environment, texts[entry.sha])
        for entry, customer, environment in wanted
    ]
    return sorted(pods, key=lambda pod: (pod.customer, pod.environment))


def _blob_texts(shas: set[str]) -> dict[str, str]:
    if not shas:
        return {}
    found = cache.get_many([f"blob:{sha}" for sha in shas])
    texts = {key.removeprefix("blob:"): text for key, text in found.items()}
    missing = sorted(shas - texts.keys())
    if missing:
        with ThreadPoolExecutor(max_workers=min(BLOB_FETCH_WORKERS, len(missing))) as pool:
            fetched = dict(zip(missing, pool.map(github.get_blob_text, missing), strict=True))
        cache.set_many({f"blob:{sha}": text for sha, text in fetched.items()}, timeout=None)
        texts.update(fetched)
    return texts


def _parse(entry: github.TreeEntry, customer: str, environment: str, text: str) -> Pod:
    try:
        spec = podspec.parse(text, settings.ALLOWED_INSTANCE_TYPES)
    except podspec.SpecError as exc:
        return Pod(customer, environment, entry.path, entry.sha, text, None, str(exc))
    if (spec.customer, spec.environment) != (customer, environment):
        error = f"spec says {spec.pod} but lives under {customer}/{environment}"
        return Pod(customer, environment, entry.path, entry.sha, text, None, error)
    return Pod(customer, environment, entry.path, entry.sha, text, spec)

"""The pod inventory: every spec.yml under SPECS_PATH, listed cheaply.

The root tree gives the SPECS_PATH tree's SHA, and one listing of that tree gives every spec
blob with its SHA. Blobs are content-addressed, so their text is cached by SHA forever in
Django's cache (shared by all workers), and only blobs not seen before are fetched: through
GitHub's GraphQL API, up to GRAPHQL_BATCH a query, else (INVENTORY_GRAPHQL off, a failed query,
a blob it did not return whole) one REST call each; the parsed
pods are cached by the SPECS_PATH tree's SHA, so a commit elsewhere costs the root call only.
The root call carries the last ETag: an unchanged repository answers 304, which costs no rate
limit, and the parsed inventory is served from the cache; for a few seconds after a check
(INVENTORY_FRESH_SECONDS) the listing is served without asking at all.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from . import gh, podspec

logger = logging.getLogger(__name__)

# The SHA that stands for "no spec.yml": what a new pod's deploy expects to find (git's null
# object id, as in a push that must create its ref).
NO_SPEC = "0" * 40

# Parallel blob fetches for a cold cache; the rest of the time nothing is fetched.
BLOB_FETCH_WORKERS = 8


# slots: each worker keeps every pod in memory (issue 18: a worker's RSS at 10,000 pods).
@dataclasses.dataclass(frozen=True, slots=True)
class Pod:
    customer: str
    environment: str
    path: str
    sha: str
    text: str
    spec: podspec.PodSpec | None
    error: str = ""
    loaded: bool = True  # False: its blob was not fetched yet (rate-limit reserve); retried next time

    @property
    def key(self) -> str:
        return f"{self.customer}/{self.environment}"

    @property
    def is_valid(self) -> bool:
        return self.spec is not None


# Searches remembered per listing (per process): a page of results and its neighbours.
SEARCHES_KEPT = 16


class Listing:
    """The parsed pods of one tree version, indexed for lookups."""

    def __init__(self, pods: list[Pod], version: str, truncated: bool = False):
        self.pods = pods
        self.truncated = truncated  # GitHub cut the tree short: some pods may be missing
        self.version = version  # changes whenever the tree (or the rules) change
        self.incomplete = not all(pod.loaded for pod in pods)  # some blobs are still to fetch
        self._found: dict[str, list[Pod]] = {}  # the last few searches' answers
        self._found_lock = threading.Lock()

    # The indexes are made on first use, once per listing: a worker that only shows pages of
    # the list does not keep them (issue 18: RSS at 10,000 pods).
    @functools.cached_property
    def by_key(self) -> dict[str, Pod]:
        return {pod.key: pod for pod in self.pods}

    @functools.cached_property
    def _search_keys(self) -> list[str]:
        """What the pods page's search matches, lowercased once per listing (not per view)."""
        return [f"{pod.key} {pod.spec.instance_name if pod.spec else ''}".lower() for pod in self.pods]

    def search(self, query: str) -> list[Pod]:
        """The pods whose "customer/environment instance_name" contains ``query`` (any case).

        A listing never changes, so the answer to a query is kept with it (the last
        SEARCHES_KEPT queries): paging through a search does not scan every pod again."""
        query = query.lower()
        found = self._found.get(query)
        if found is None:
            found = [pod for pod, key in zip(self.pods, self._search_keys, strict=True) if query in key]
            # A worker's threads share the listing: two evicting the same oldest search at once
            # failed the page (KeyError, or the dict changing size while read).
            with self._found_lock:
                if len(self._found) >= SEARCHES_KEPT:
                    del self._found[next(iter(self._found))]
                self._found[query] = found
        return found


# The parsed listing is cached in parts of this many pods (~250 KB pickled): loading it after a
# change never holds a whole 10,000-pod pickle in a worker (issue 18: RSS at 10,000 pods).
PODS_PER_CACHE_ENTRY = 1000

# Per process: the listing of the last tree version seen, so a page view does not unpickle
# a thousand pods from the shared cache when nothing changed.
_memo: dict[str, Listing] = {}
_load_count = itertools.count(1)
_loads = 0  # a new value each time this process loads a listing into _memo (loaded_version)


def _cache_key() -> str:
    return _cache_key_of(
        settings.GITHUB_API_URL,
        settings.GH_REPO,
        settings.DEPLOY_REF,
        settings.SPECS_PATH,
        tuple(settings.ALLOWED_INSTANCE_TYPES),
    )


@functools.lru_cache(maxsize=8)
def _cache_key_of(api_url: str, repo: str, ref: str, path: str, types: tuple[str, ...]) -> str:
    config = "|".join([api_url, repo, ref, path, *sorted(types)])
    return "inventory:v6:" + hashlib.sha256(config.encode()).hexdigest()[:32]


def _pods_key(base: str, sha: str) -> str:
    return f"{base}:pods:{sha}"


def _listing(base: str, sha: str) -> Listing | None:
    key = _pods_key(base, sha)
    listing = _memo.get(key)
    if listing is None:
        cached = cache.get(key)
        if cached is None:
            return None
        pods: list[Pod] = []
        for part in range(cached["parts"]):
            # One part at a time: a worker never holds the whole pickled listing at once.
            chunk = cache.get(f"{key}:{part}")
            if chunk is None:  # evicted: the listing is made again from the cached blobs
                return None
            pods += chunk
        global _loads
        _memo.clear()
        listing = _memo[key] = Listing(pods, version=key, truncated=cached["truncated"])
        _loads = next(_load_count)  # unique even when threads load at once
    return listing


def _store(key: str, pods: list[Pod], truncated: bool) -> None:
    """Cache ``pods`` under ``key`` in parts of PODS_PER_CACHE_ENTRY, the head last."""
    timeout = 7 * 24 * 3600
    parts = range(0, len(pods), PODS_PER_CACHE_ENTRY)
    for part, start in enumerate(parts):
        cache.set(f"{key}:{part}", pods[start : start + PODS_PER_CACHE_ENTRY], timeout=timeout)
    cache.set(key, {"parts": len(parts), "truncated": truncated}, timeout=timeout)


# ``listing(meta=…)``'s default: the caller has not read the listing's cache entry.
_UNREAD = object()


def meta_key() -> str:
    """The listing's cache entry (its tree's SHA and ETag, and when GitHub was last asked)."""
    return _meta_key(_cache_key())


def _meta_key(base: str) -> str:
    return f"{base}:meta"


def loaded_version() -> int:
    """Changes whenever this process loads another listing (kept per process, ``_memo``)."""
    return _loads


def _load(*, revalidate: bool, fresh: bool = False, meta: Any = _UNREAD) -> Listing:
    """The current listing: from the cache while fresh, else revalidated with one conditional call.

    Within INVENTORY_FRESH_SECONDS of the last check the cached listing is trusted without asking
    GitHub, unless ``fresh`` (the deploy's lost-update check: always one conditional call);
    ``revalidate=False`` trusts it at any age.
    """
    base = _cache_key()
    if meta is _UNREAD:
        meta = cache.get(_meta_key(base))  # {"etag": ..., "sha": ..., "checked_at": ...}
    listing = _listing(base, meta["sha"]) if meta else None
    if (
        listing
        and not fresh
        and (not revalidate or time.time() - meta["checked_at"] < settings.INVENTORY_FRESH_SECONDS)
    ):
        return listing
    if listing and not fresh and not _revalidation_lease(base):
        return listing  # another worker is asking GitHub right now: its answer serves the next views
    tree = gh.get_spec_tree(
        etag=meta["etag"] if listing else None, known_sha=meta["sha"] if listing else None
    )
    if tree is None or not tree.listed:  # 304, or a commit that left SPECS_PATH as it was
        assert listing is not None and meta is not None
        if tree is None and fresh:
            # The deploy's check: a 304 changes nothing worth a write transaction (it does not
            # extend the pages' freshness window; issue 18: statements per deploy).
            return listing
        etag = meta["etag"] if tree is None else tree.etag
        checked = {"etag": etag, "sha": meta["sha"], "checked_at": time.time()}
        cache.set(_meta_key(base), checked, timeout=None)
        return listing
    previous = {(pod.path, pod.sha): pod for pod in listing.pods if pod.loaded} if listing else {}
    pods = _build(tree.entries, previous)
    if tree.truncated:
        logger.warning("GitHub truncated the tree of %s: the pod list is incomplete", settings.GH_REPO)
    key = _pods_key(base, tree.sha)
    if not all(pod.loaded for pod in pods):
        # Not kept under this tree's SHA: the next view asks again and fetches the rest. The
        # version counts the specs read, so content rendered for fewer is not shown again.
        read = sum(pod.loaded for pod in pods)
        return Listing(pods, f"{key}:partial:{read}/{len(pods)}", tree.truncated)
    _store(key, pods, tree.truncated)
    cache.set(_meta_key(base), {"etag": tree.etag, "sha": tree.sha, "checked_at": time.time()}, timeout=None)
    return _listing(base, tree.sha) or Listing(pods, key, tree.truncated)


# Per process: until when another worker's revalidation lease is not asked for again.
_lease_taken: dict[str, float] = {}
LEASE_RETRY_SECONDS = 1.0


def _revalidation_lease(base: str) -> bool:
    """True for the one worker that may ask GitHub whether a stale listing changed: the others,
    meanwhile, serve the listing they have (one conditional request per INVENTORY_FRESH_SECONDS
    across all workers, not one each). The lease lapses by itself after the window."""
    seconds = settings.INVENTORY_FRESH_SECONDS
    if seconds <= 0:
        return True  # every view revalidates: nothing to share
    now = time.monotonic()
    if now < _lease_taken.get(base, 0.0):
        return False
    if cache.add(f"{base}:lease", 1, timeout=seconds):
        return True
    # Another worker holds it and answers within a GitHub round trip. Meanwhile every view here
    # would try again (a write transaction each, Django's add; 1 % of a busy worker's time):
    # this process waits LEASE_RETRY_SECONDS first, which is also the most a lapsed lease costs.
    _lease_taken[base] = now + min(LEASE_RETRY_SECONDS, seconds)
    return False


def listing(*, revalidate: bool = True, fresh: bool = False, meta: Any = _UNREAD) -> Listing:
    """The current listing, with a ``version`` that identifies its content; ``fresh``: checked
    with GitHub now, whatever INVENTORY_FRESH_SECONDS allows (a 304, free, when unchanged);
    ``meta``: the cache's ``meta_key()`` entry (None: missing), when the caller read it already."""
    return _load(revalidate=revalidate, fresh=fresh, meta=meta)


def list_pods(*, revalidate: bool = True) -> list[Pod]:
    """Every pod, sorted by customer then environment."""
    return _load(revalidate=revalidate).pods


def get_pod(customer: str, environment: str, *, revalidate: bool = True) -> Pod | None:
    return _load(revalidate=revalidate).by_key.get(f"{customer}/{environment}")


def spec_text(sha: str) -> str | None:
    """The text of spec blob ``sha`` (any version, current or past), from the blob cache or one
    GitHub call; None when it is larger than a spec may be, or ``sha`` is NO_SPEC."""
    if sha == NO_SPEC:
        return None
    text = cache.get(f"blob:{sha}")
    if text is None:
        text = gh.get_blob_text(sha)
        if len(text.encode("utf-8", "surrogatepass")) > podspec.MAX_SPEC_BYTES:
            return None
        cache.set(f"blob:{sha}", text, timeout=None)
    return text


def expire() -> None:
    """Make the next listing ask GitHub (a deployment just committed a new spec)."""
    base = _cache_key()
    meta = cache.get(_meta_key(base))
    if meta:
        cache.set(_meta_key(base), {**meta, "checked_at": 0.0}, timeout=None)
    cache.delete(f"{base}:lease")
    _lease_taken.pop(base, None)  # this process asks at its next view, whoever held the lease


def _build(entries: tuple[gh.TreeEntry, ...], previous: dict[tuple[str, str], Pod]) -> list[Pod]:
    prefix_parts = len(settings.SPECS_PATH.split("/"))
    wanted = []
    for entry in entries:
        parts = entry.path.split("/")[prefix_parts:]
        if len(parts) == 3:  # <customer>/<environment>/spec.yml
            # Interned: a customer's pods, every pod of an environment and its spec share one
            # string each, in memory and in the cached pickle (which keeps shared objects shared).
            wanted.append((entry, sys.intern(parts[0]), sys.intern(parts[1])))
    texts = _blob_texts(
        {
            entry.sha
            for entry, _, _ in wanted
            if (entry.path, entry.sha) not in previous and entry.size <= podspec.MAX_SPEC_BYTES
        }
    )
    pods = []
    for entry, customer, environment in wanted:
        pod = previous.get((entry.path, entry.sha))
        if pod is None:
            if entry.size > podspec.MAX_SPEC_BYTES:
                error = (
                    f"spec.yml is larger than {podspec.MAX_SPEC_BYTES} bytes (or of unknown size): not read"
                )
                pod = Pod(customer, environment, entry.path, entry.sha, "", None, error)
            elif entry.sha in texts:
                pod = _parse(entry, customer, environment, texts[entry.sha])
            else:
                error = "not loaded yet: GitHub's rate limit is low and kept for deployments"
                pod = Pod(customer, environment, entry.path, entry.sha, "", None, error, loaded=False)
        pods.append(pod)
    return sorted(pods, key=lambda pod: (pod.customer, pod.environment))


def _blob_texts(shas: set[str]) -> dict[str, str]:
    """The texts of ``shas``: from the cache, else fetched a batch at a time, each kept as soon as
    it arrives (a failure half-way loses nothing). Fetching stops while GitHub's remaining rate
    limit is within INVENTORY_RATE_LIMIT_RESERVE, so a cold listing never starves a dispatch."""
    if not shas:
        return {}
    found = cache.get_many([f"blob:{sha}" for sha in shas])
    texts = {key.removeprefix("blob:"): text for key, text in found.items()}
    missing = sorted(shas - texts.keys())
    if missing and settings.INVENTORY_GRAPHQL:
        missing = _graphql_texts(missing, texts)
    if not missing:
        return texts
    # What is left of the rate limit: GitHub's last word, but never more than we know we spent
    # since (the answers to parallel fetches set it in any order).
    remaining: int | None = None
    with ThreadPoolExecutor(max_workers=min(BLOB_FETCH_WORKERS, len(missing))) as pool:
        for start in range(0, len(missing), BLOB_FETCH_WORKERS):
            said = gh.rate_limit_remaining()
            if said is not None:
                remaining = said if remaining is None else min(said, remaining)
            if (
                remaining is not None
                and remaining - BLOB_FETCH_WORKERS < settings.INVENTORY_RATE_LIMIT_RESERVE
            ):
                logger.warning(
                    "pod listing stopped with %d specs unread: %d requests left in GitHub's rate limit",
                    len(missing) - start,
                    remaining,
                )
                break
            batch = missing[start : start + BLOB_FETCH_WORKERS]
            if remaining is not None:
                remaining -= len(batch)
            futures = {pool.submit(gh.get_blob_text, sha): sha for sha in batch}
            failure = None
            for future in as_completed(futures):
                try:
                    text = future.result()
                except gh.GitHubError as exc:
                    failure = failure or exc
                    continue
                cache.set(f"blob:{futures[future]}", text, timeout=None)
                texts[futures[future]] = text
            if failure:
                raise failure
    return texts


def _graphql_texts(missing: list[str], texts: dict[str, str]) -> list[str]:
    """Read ``missing`` through GitHub's GraphQL API, GRAPHQL_BATCH blobs a query, into ``texts``
    (and the cache); what is still missing is returned, to be read one by one. A failed query
    ends the bulk reads: the rest goes the per-spec way, which works wherever the REST API does."""
    for start in range(0, len(missing), gh.GRAPHQL_BATCH):
        batch = missing[start : start + gh.GRAPHQL_BATCH]
        try:
            found = gh.get_blob_texts(batch)
        except gh.GitHubRateLimitError as exc:
            # A secondary limit: GitHub's primary GraphQL limit answers 200 with RATE_LIMITED (an
            # error below). GitHub asks to "stop making requests temporarily", and the concurrency
            # and CPU-time limits are shared by the REST and GraphQL APIs: a burst of per-spec
            # REST reads now would be refused too and risks the token being blocked. The specs
            # left are "not loaded yet", read on a later view.
            # https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits
            logger.warning(
                "pod listing: GitHub's GraphQL API refused the query (%s); %d specs are read on a later view",
                exc.message,
                len(missing) - start,
            )
            return []
        except gh.GitHubError as exc:
            logger.warning(
                "pod listing: GitHub's GraphQL API failed (%s); reading %d specs one by one",
                exc.message,
                len(missing) - start,
            )
            break
        with transaction.atomic():  # one commit for the batch, not one per blob (the database cache)
            cache.set_many({f"blob:{sha}": text for sha, text in found.items()}, timeout=None)
        texts.update(found)
    left = [sha for sha in missing if sha not in texts]
    if left:
        logger.warning(
            "pod listing: %d of %d specs not read through GitHub's GraphQL API (failed, binary, "
            "truncated or not answered); reading them one by one",
            len(left),
            len(missing),
        )
    return left


def _parse(entry: gh.TreeEntry, customer: str, environment: str, text: str) -> Pod:
    try:
        spec = podspec.parse(text, settings.ALLOWED_INSTANCE_TYPES)
    except podspec.SpecError as exc:
        # Kept only when small: it becomes a request's spec_before and the preview's diff, and a
        # blob may be larger than its tree entry said.
        kept = text if len(text.encode("utf-8", "surrogatepass")) <= podspec.MAX_SPEC_BYTES else ""
        return Pod(customer, environment, entry.path, entry.sha, kept, None, str(exc))
    if (spec.customer, spec.environment) != (customer, environment):
        error = f"spec says {spec.pod} but lives under {customer}/{environment}"
        return Pod(customer, environment, entry.path, entry.sha, text, None, error)
    spec = dataclasses.replace(
        spec, customer=customer, environment=environment, instance_type=sys.intern(spec.instance_type)
    )
    return Pod(customer, environment, entry.path, entry.sha, text, spec)

#!/usr/bin/env bash
# Commit a pod's spec.yml and push it to the deploy branch, rebasing and retrying when another
# run pushed first. A spec identical to the committed one commits nothing and succeeds.
#
# usage: commit-spec.sh <spec-file> [commit-message]
# env:   DEPLOY_BRANCH     branch to push to (default: GITHUB_REF_NAME, else the current branch)
#        PUSH_ATTEMPTS     push attempts before giving up (default 5)
#        GIT_PUSH_TOKEN    token for an HTTPS push; passed to git through GIT_CONFIG_* variables,
#                          never on the command line and never persisted in .git/config
#        REMOTE            remote name (default origin)
set -euo pipefail

spec=${1:?usage: commit-spec.sh <spec-file> [commit-message]}
message=${2:-"Update ${spec}"}
remote=${REMOTE:-origin}
attempts=${PUSH_ATTEMPTS:-5}
branch=${DEPLOY_BRANCH:-${GITHUB_REF_NAME:-$(git rev-parse --abbrev-ref HEAD)}}

if [[ -z "$branch" || "$branch" == "HEAD" ]]; then
  echo "::error::cannot tell which branch to push to; set DEPLOY_BRANCH" >&2
  exit 1
fi
if [[ ! -f "$spec" ]]; then
  echo "::error::spec file not found: $spec" >&2
  exit 1
fi

: "${GIT_AUTHOR_NAME:=github-actions[bot]}"
: "${GIT_AUTHOR_EMAIL:=41898282+github-actions[bot]@users.noreply.github.com}"
: "${GIT_COMMITTER_NAME:=$GIT_AUTHOR_NAME}"
: "${GIT_COMMITTER_EMAIL:=$GIT_AUTHOR_EMAIL}"
export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL

if [[ -n "${GIT_PUSH_TOKEN:-}" ]]; then
  auth=$(printf 'x-access-token:%s' "$GIT_PUSH_TOKEN" | base64 | tr -d '\n')
  if [[ -n "${GITHUB_ACTIONS:-}" ]]; then
    echo "::add-mask::$auth"
  fi
  export GIT_CONFIG_COUNT=1
  export GIT_CONFIG_KEY_0="http.${GITHUB_SERVER_URL:-https://github.com}/.extraheader"
  export GIT_CONFIG_VALUE_0="AUTHORIZATION: basic $auth"
fi

git add -- "$spec"
if git diff --cached --quiet -- "$spec"; then
  echo "$spec is unchanged; nothing to commit"
  exit 0
fi
git commit --quiet -m "$message" -- "$spec"
echo "committed $spec: $(git rev-parse --short HEAD)"

for ((attempt = 1; attempt <= attempts; attempt++)); do
  if git push --quiet "$remote" "HEAD:refs/heads/$branch"; then
    echo "pushed $spec to $remote/$branch (attempt $attempt)"
    exit 0
  fi
  if ((attempt == attempts)); then
    break
  fi
  echo "push rejected (attempt $attempt of $attempts); rebasing onto $remote/$branch and retrying"
  git fetch --quiet "$remote" "$branch"
  if ! git rebase --quiet FETCH_HEAD; then
    git rebase --abort || true
    echo "::error::rebasing $spec onto $remote/$branch conflicted; not pushed" >&2
    exit 1
  fi
  sleep "$((attempt * 2 - 1))"
done

echo "::error::could not push $spec to $remote/$branch after $attempts attempts" >&2
exit 1

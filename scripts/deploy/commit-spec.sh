#!/usr/bin/env bash
# Commit a pod's spec.yml and push it to the deploy branch, before Terraform applies it: the
# repository is the desired state, so nothing is applied that is not committed. A spec identical
# to the committed one commits nothing and succeeds.
#
# A push another run beat (non-fast-forward) is rebased and retried. A push refused by branch
# protection or a ruleset (GH006, GH013) fails at once with what to change: retrying cannot help.
# Any other refusal fails at once with git's message.
#
# usage: commit-spec.sh <spec-file> [commit-message]
# env:   DEPLOY_BRANCH     branch to push to (default: GITHUB_REF_NAME, else the current branch)
#        PUSH_ATTEMPTS     push attempts when other runs keep pushing first (default 5)
#        GIT_PUSH_TOKEN    token for an HTTPS push; passed to git through GIT_CONFIG_* variables,
#                          never on the command line and never persisted in .git/config
#        REMOTE            remote name (default origin)
#        GITHUB_OUTPUT     when set, receives commit=<the commit of the spec on the branch>
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

record_commit() {
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    echo "commit=$(git rev-parse HEAD)" >>"$GITHUB_OUTPUT"
  fi
}

git add -- "$spec"
if git diff --cached --quiet -- "$spec"; then
  echo "$spec is unchanged; nothing to commit"
  record_commit
  exit 0
fi
git commit --quiet -m "$message" -- "$spec"
echo "committed $spec: $(git rev-parse --short HEAD)"

# What GitHub answers when branch protection (GH006) or a ruleset (GH013) refuses a push.
protection='GH006|GH013|protected branch|rule violations|Changes must be made through a pull request'
# What git answers when the branch moved since the checkout (or moved during the push).
moved='\((fetch first|non-fast-forward)\)|cannot lock ref|failed to update ref'

for ((attempt = 1; attempt <= attempts; attempt++)); do
  if push_log=$(git push --quiet "$remote" "HEAD:refs/heads/$branch" 2>&1); then
    echo "pushed $spec to $remote/$branch (attempt $attempt)"
    record_commit
    exit 0
  fi
  echo "$push_log" >&2
  if grep -qiE "$protection" <<<"$push_log"; then
    reason=$(grep -iE -m1 "$protection" <<<"$push_log" | sed -e 's/^remote: *//' -e 's/^error: *//' -e 's/[[:space:]]*$//')
    echo "::error title=Protected branch::The branch $branch is protected and the workflow's token" \
      "may not push to it: GitHub refused the commit of $spec ($reason). Nothing was applied." \
      "Make a GitHub App a bypass actor of the branch's ruleset or protection rule and set the" \
      "DEPLOY_APP_ID variable and DEPLOY_APP_PRIVATE_KEY secret, so the workflow pushes with the" \
      "App's token (see README, The deploy workflow on GitHub)." >&2
    exit 1
  fi
  if ! grep -qE "$moved" <<<"$push_log"; then
    echo "::error::git refused the push of $spec to $remote/$branch (see git's message above); nothing was applied" >&2
    exit 1
  fi
  if ((attempt == attempts)); then
    break
  fi
  echo "push rejected: $remote/$branch moved (attempt $attempt of $attempts); rebasing onto it and retrying"
  git fetch --quiet "$remote" "$branch"
  if ! git rebase --quiet FETCH_HEAD; then
    git rebase --abort || true
    echo "::error::rebasing $spec onto $remote/$branch conflicted; not pushed, nothing was applied" >&2
    exit 1
  fi
  sleep "$((attempt * 2 - 1))"
done

echo "::error::could not push $spec to $remote/$branch after $attempts attempts; nothing was applied" >&2
exit 1

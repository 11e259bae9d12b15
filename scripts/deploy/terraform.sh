#!/usr/bin/env bash
# Terraform steps of the deploy workflow, one pod per state file.
#
# usage: terraform.sh COMMAND [extra terraform arguments]
#   init         terraform init with the pod's S3 state
#   plan         terraform plan -out=TF_PLAN_FILE of SPEC_FILE
#   summarize    PLAN_SUMMARY (plan-summary.json) of the saved plan, and its table in the step
#                summary; spec_blob is the blob of SPEC_FILE in the checkout's HEAD commit
#   unpack-plan  apply mode, once the plan run's artifacts are downloaded (before anything else):
#                "Plan not found" unless the saved plan and SAVED_SUMMARY are there, are this
#                pod's, and (on Actions) come from a successful plan run of this workflow on this
#                branch. Restores the plan's dependency lock file, so that init installs the
#                providers the plan was made with
#   check-plan   apply mode, after init and before the commit: "Stale plan" unless the plan was
#                made against the SPEC_FILE on the branch now (its blob in HEAD), from this run's
#                SPEC_FILE, from the configuration in TF_DIR, and from the Terraform state as it
#                is now
#   apply        terraform apply of exactly the saved plan; Terraform refusing a stale one is
#                reported as "Stale plan"
# env:   CUSTOMER, ENVIRONMENT  the pod (already validated by `python -m deployments.podspec validate`)
#        SPEC_FILE              the pod's rendered spec.yml, in the git checkout (plan, summarize,
#                               unpack-plan, check-plan)
#        TF_STATE_BUCKET        S3 bucket of the state (init)
#        AWS_REGION             region of the bucket and the pod (init)
#        TF_DIR                 the root configuration (default: terraform)
#        TF_PLAN_FILE           saved plan, relative to TF_DIR (default: tfplan)
#        PLAN_SUMMARY           plan-summary.json to write (summarize)
#        SAVED_SUMMARY          the plan run's plan-summary.json (unpack-plan, check-plan)
#        PLAN_RUN_ID            the plan run (unpack-plan)
#        GH_TOKEN               reads the plan run from GitHub (unpack-plan, on Actions)
#        PYTHON                 the Python with PyYAML (default: python)
#        GITHUB_STEP_SUMMARY    the plan's table is appended here (summarize)
#        RUNNER_TEMP            private scratch files (default: TMPDIR, /tmp)
set -euo pipefail

command=${1:?usage: terraform.sh init|plan|summarize|unpack-plan|check-plan|apply [args]}
shift
tf_dir=${TF_DIR:-terraform}
plan_file=${TF_PLAN_FILE:-tfplan}
python=${PYTHON:-python}
: "${CUSTOMER:?CUSTOMER is required}" "${ENVIRONMENT:?ENVIRONMENT is required}"
pod="$CUSTOMER/$ENVIRONMENT"
export TF_IN_AUTOMATION=1
# `python -m deployments.plan` from anywhere: the repository holding this script.
PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

# An error annotation the portal reads (title) with its message, as a workflow command.
annotate() {
  local message=${2//'%'/'%25'}
  message=${message//$'\r'/'%0D'}
  message=${message//$'\n'/'%0A'}
  echo "::error title=$1::$message" >&2
}

# A private scratch directory, removed when the script exits: a plan's JSON and the state hold
# every value, sensitive ones included.
scratch() {
  umask 077
  tmp=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/terraform-sh.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}

# The git blob id of SPEC_FILE in the commit checked out (HEAD), or nothing for a new pod.
spec_blob() {
  local dir
  dir=$(dirname "$SPEC_FILE")
  mkdir -p "$dir"
  git -C "$dir" rev-parse --verify --quiet "HEAD:./$(basename "$SPEC_FILE")" || true
}

saved_plan="$tf_dir/$plan_file"

case "$command" in
  init)
    : "${TF_STATE_BUCKET:?TF_STATE_BUCKET is required}" "${AWS_REGION:?AWS_REGION is required}"
    terraform -chdir="$tf_dir" init -input=false -no-color \
      -backend-config="bucket=$TF_STATE_BUCKET" \
      -backend-config="key=pods/$CUSTOMER/$ENVIRONMENT/terraform.tfstate" \
      -backend-config="region=$AWS_REGION" \
      -backend-config="encrypt=true" \
      -backend-config="use_lockfile=true" \
      "$@"
    ;;
  plan)
    : "${SPEC_FILE:?SPEC_FILE is required}"
    # Relative to TF_DIR: the saved plan records the path, and its apply, maybe on another
    # runner with another workspace path, reads the file again.
    spec=$(realpath --relative-to="$tf_dir" "$SPEC_FILE")
    terraform -chdir="$tf_dir" plan -input=false -no-color -out="$plan_file" -var "spec_file=$spec" "$@"
    ;;
  summarize)
    : "${SPEC_FILE:?SPEC_FILE is required}" "${PLAN_SUMMARY:?PLAN_SUMMARY is required}"
    blob=$(spec_blob)
    mkdir -p "$(dirname "$PLAN_SUMMARY")"
    # Piped: the plan's full JSON never touches the disk or the log.
    terraform -chdir="$tf_dir" show -json -no-color "$plan_file" |
      "$python" -m deployments.plan summarize --show-json - --out "$PLAN_SUMMARY" \
        --pod "$pod" --spec-blob "$blob"
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
      "$python" -m deployments.plan markdown --summary "$PLAN_SUMMARY" >>"$GITHUB_STEP_SUMMARY"
    fi
    ;;
  unpack-plan)
    : "${SPEC_FILE:?SPEC_FILE is required}" "${SAVED_SUMMARY:?SAVED_SUMMARY is required}"
    if [[ ! -s "$saved_plan" || ! -s "$SAVED_SUMMARY" ]]; then
      message="The saved plan of run ${PLAN_RUN_ID:-?} was not found: its tfplan or plan-summary artifact"
      message+=" is missing, or expired (a saved plan is kept one day). Plan again; nothing was changed."
      annotate "Plan not found" "$message"
      exit 1
    fi
    # On Actions: the run must be this workflow's own successful plan run, on this branch (a
    # plan file carries the configuration it applies, with the deploy role's credentials).
    if [[ -n "${GITHUB_ACTIONS:-}" ]]; then
      "$python" -m deployments.plan check-run
    fi
    "$python" -m deployments.plan check-saved --plan "$saved_plan" --summary "$SAVED_SUMMARY"
    "$python" -m deployments.plan restore-lock-file --plan "$saved_plan" --out "$tf_dir/.terraform.lock.hcl"
    ;;
  check-plan)
    : "${SPEC_FILE:?SPEC_FILE is required}" "${SAVED_SUMMARY:?SAVED_SUMMARY is required}"
    scratch
    terraform -chdir="$tf_dir" show -json -no-color "$plan_file" >"$tmp/plan.json"
    terraform -chdir="$tf_dir" state pull >"$tmp/state.json"
    "$python" -m deployments.plan check-saved --plan "$saved_plan" --summary "$SAVED_SUMMARY" \
      --spec-blob "$(spec_blob)" --show-json "$tmp/plan.json" --spec "$SPEC_FILE" --tf-dir "$tf_dir" \
      --state "$tmp/state.json"
    ;;
  apply)
    scratch
    if terraform -chdir="$tf_dir" apply -input=false -no-color "$@" "$plan_file" 2>&1 | tee "$tmp/apply.log"; then
      exit 0
    fi
    if grep -q "Saved plan is stale" "$tmp/apply.log"; then
      message="The plan is out of date — plan again. Terraform refused the saved plan: the state of $pod"
      message+=" changed after the plan was made. Nothing was applied, but spec.yml is already committed:"
      message+=" the branch is ahead of the infrastructure until the next plan is applied."
      annotate "Stale plan" "$message"
    fi
    exit 1
    ;;
  *)
    echo "unknown command: $command (expected init, plan, summarize, unpack-plan, check-plan or apply)" >&2
    exit 2
    ;;
esac

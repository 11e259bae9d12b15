#!/usr/bin/env bash
# Terraform steps of the deploy workflow, one pod per state file.
#
# usage: terraform.sh init|plan|apply [extra terraform arguments]
# env:   CUSTOMER, ENVIRONMENT  the pod (already validated by `python -m deployments.podspec validate`)
#        SPEC_FILE              the pod's rendered spec.yml (plan)
#        TF_STATE_BUCKET        S3 bucket of the state (init)
#        AWS_REGION             region of the bucket and the pod (init)
#        TF_DIR                 the root configuration (default: terraform)
#        TF_PLAN_FILE           saved plan, relative to TF_DIR (default: tfplan)
#        GITHUB_STEP_SUMMARY    the plan text is appended here (plan)
set -euo pipefail

command=${1:?usage: terraform.sh init|plan|apply [args]}
shift
tf_dir=${TF_DIR:-terraform}
plan_file=${TF_PLAN_FILE:-tfplan}
: "${CUSTOMER:?CUSTOMER is required}" "${ENVIRONMENT:?ENVIRONMENT is required}"
export TF_IN_AUTOMATION=1

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
    spec=$(realpath "$SPEC_FILE")
    terraform -chdir="$tf_dir" plan -input=false -no-color -out="$plan_file" -var "spec_file=$spec" "$@"
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
      plan_text=$(mktemp)
      terraform -chdir="$tf_dir" show -no-color "$plan_file" >"$plan_text"
      {
        echo "### Terraform plan for \`$CUSTOMER/$ENVIRONMENT\`"
        echo
        echo '<details><summary>Plan</summary>'
        echo
        echo '```'
        # The step summary holds at most 1 MiB.
        head -c 900000 "$plan_text"
        echo '```'
        echo
        echo '</details>'
      } >>"$GITHUB_STEP_SUMMARY"
      rm -f "$plan_text"
    fi
    ;;
  apply)
    terraform -chdir="$tf_dir" apply -input=false -no-color "$@" "$plan_file"
    ;;
  *)
    echo "unknown command: $command (expected init, plan or apply)" >&2
    exit 2
    ;;
esac

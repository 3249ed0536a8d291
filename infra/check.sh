#!/usr/bin/env bash
# Offline checks of the deployment code (no AWS credentials, no network beyond package registries):
#   terraform fmt -check, validate (both modules + example), terraform test (mocked provider: IAM
#   scoping of the serving function, of the precompute tasks and state machine, the rendered ASL),
#   checkov (skips justified in terraform/.checkov.yaml), cdk synth (two variants) + node tests
#   (incl. asl-validator on infra/statemachine/precompute.asl.json) + cfn-lint (ignores justified in
#   cdk/.cfnlintrc.yaml; it also validates the state machine definition in the templates).
# A missing tool is reported LOUDLY and its checks are skipped; CELLUCID_INFRA_STRICT=1 makes a
# missing tool a failure. CELLUCID_INFRA_BUILD_LAMBDA=1 also builds the zipped function with
# cargo lambda and prints its size.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STRICT=${CELLUCID_INFRA_STRICT:-0}
failures=()
skipped=()
steps=0

loud() {
  printf '\n' >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

step() { # step NAME CMD...
  local name=$1
  shift
  steps=$((steps + 1))
  echo "== infra: $name"
  if "$@"; then
    echo "   ok: $name"
  else
    echo "   FAILED: $name"
    failures+=("$name")
  fi
}

missing() { # missing TOOL WHAT INSTALL
  loud "$1 NOT FOUND: SKIPPING $2" "install: $3"
  skipped+=("$2 ($1 missing)")
}

# --- Terraform ----------------------------------------------------------------------------------
tf_dirs=(infra/terraform/modules/cellucid-edge infra/terraform/modules/cellucid-precompute infra/terraform/examples/public-atlas)
if command -v terraform >/dev/null 2>&1; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  # A configured-but-absent CLI config file only produces warnings: use an empty one.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then
    : >"$TMP/terraformrc"
    export TF_CLI_CONFIG_FILE="$TMP/terraformrc"
  fi
  export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
  step "terraform fmt -check -recursive" terraform fmt -check -recursive infra/terraform

  # The registry is unreachable: use the machine's filesystem mirror of hashicorp/aws.
  mirror=${TF_PLUGIN_MIRROR:-}
  if [ -z "$mirror" ]; then
    for candidate in /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
      "$HOME/.terraform.d/plugins" "$HOME/.local/share/terraform/plugins"; do
      if [ -d "$candidate/registry.terraform.io/hashicorp/aws" ]; then
        mirror=$candidate
        break
      fi
    done
  fi
  if [ -z "$mirror" ]; then
    found=$(find / -maxdepth 7 -type d -path '*registry.terraform.io/hashicorp/aws' 2>/dev/null | head -n 1)
    [ -n "$found" ] && mirror=${found%/registry.terraform.io/hashicorp/aws}
  fi
  if [ -z "$mirror" ]; then
    missing "the hashicorp/aws provider mirror" "terraform validate/test" \
      "a Terraform plugin mirror holding registry.terraform.io/hashicorp/aws (set TF_PLUGIN_MIRROR)"
  else
    echo "   provider mirror: $mirror"
    for dir in "${tf_dirs[@]}"; do
      data="$TMP/$(echo "$dir" | tr '/' '_')"
      tf() { TF_DATA_DIR="$data" terraform -chdir="$dir" "$@"; }
      step "terraform init ($dir)" tf init -backend=false -input=false -no-color -plugin-dir="$mirror"
      step "terraform validate ($dir)" tf validate -no-color
    done
    for dir in "${tf_dirs[@]:0:2}"; do
      data="$TMP/$(echo "$dir" | tr '/' '_')"
      step "terraform test ($dir)" env TF_DATA_DIR="$data" terraform -chdir="$dir" test -no-color
    done
  fi
else
  missing terraform "terraform fmt/validate/test" "https://developer.hashicorp.com/terraform/install (not reachable from CI: use the machine image's terraform)"
fi

# checkov pins old boto3/botocore, so it is best kept in its own venv (CHECKOV=path, or the default
# venv below); a checkov on PATH is used too.
checkov_bin=${CHECKOV:-}
if [ -z "$checkov_bin" ]; then
  if command -v checkov >/dev/null 2>&1; then
    checkov_bin=$(command -v checkov)
  elif [ -x "$HOME/.venv-checkov/bin/checkov" ]; then
    checkov_bin="$HOME/.venv-checkov/bin/checkov"
  fi
fi
if [ -n "$checkov_bin" ]; then
  step "checkov (infra/terraform)" "$checkov_bin" --config-file infra/terraform/.checkov.yaml
else
  missing checkov "checkov" 'python3 -m venv "$HOME/.venv-checkov" && "$HOME/.venv-checkov/bin/pip" install checkov'
fi

# --- CDK ----------------------------------------------------------------------------------------
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  cdk_dir=infra/cdk
  if [ ! -x "$cdk_dir/node_modules/.bin/cdk" ]; then
    step "npm ci (infra/cdk)" npm --prefix "$cdk_dir" ci --no-audit --no-fund --loglevel=error
  fi
  export AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true
  cdk() { (cd "$cdk_dir" && ./node_modules/.bin/cdk "$@"); }
  rm -rf "$cdk_dir/cdk.out" "$cdk_dir/cdk.out.variant"
  step "cdk synth (defaults)" cdk synth --no-notices --quiet
  step "cdk synth (existing bucket, arm64, reserved concurrency)" cdk synth --no-notices --quiet \
    -o cdk.out.variant -c createBucket=false -c bucketName=lab-shared -c dataPrefix=teams/lab/atlases \
    -c cachePrefix=teams/lab/cellucid-cache -c architecture=arm64 -c reservedConcurrency=5
  step "node --test (infra/cdk)" bash -c "cd $cdk_dir && node --test test/"
  if command -v cfn-lint >/dev/null 2>&1; then
    step "cfn-lint (synthesised templates)" bash -c "cd $cdk_dir && cfn-lint cdk.out/*.template.json cdk.out.variant/*.template.json"
  else
    missing cfn-lint "cfn-lint" "python3 -m pip install cfn-lint"
  fi
else
  missing node/npm "cdk synth, node tests and cfn-lint" "apt-get install nodejs npm"
fi

# --- Optional: the function package ---------------------------------------------------------------
if [ "${CELLUCID_INFRA_BUILD_LAMBDA:-0}" = 1 ]; then
  if command -v cargo-lambda >/dev/null 2>&1; then
    step "cargo lambda build --release (x86_64 zip)" cargo lambda build --release --bin cellucid-lambda --no-default-features --output-format zip
    zip="$ROOT/target/lambda/cellucid-lambda/bootstrap.zip"
    [ -f "$zip" ] && echo "   bootstrap.zip: $(stat -c %s "$zip") bytes"
  else
    missing cargo-lambda "the Lambda package build" "python3 -m pip install cargo-lambda"
  fi
fi

echo "== infra: $steps checks run, ${#failures[@]} failed, ${#skipped[@]} tool groups skipped"
for s in "${skipped[@]}"; do loud "SKIPPED: $s"; done
if [ "${#failures[@]}" -gt 0 ]; then
  printf '   failed: %s\n' "${failures[@]}"
  exit 1
fi
if [ "${#skipped[@]}" -gt 0 ] && [ "$STRICT" = 1 ]; then
  echo "   CELLUCID_INFRA_STRICT=1 and tools are missing"
  exit 1
fi
exit 0

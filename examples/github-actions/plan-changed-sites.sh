#!/bin/sh
# Plan every site a pull request changes, and write one Markdown pull-request comment.
#
#   plan-changed-sites.sh BASE [OUT]
#
# Run it in the pull request's checkout (HEAD is what would merge), with BASE the target
# branch's commit or ref (e.g. origin/main). A change under crds/ concerns every site. Each
# site is planned against its recorded state in $RECONCILER_STATE_DIR/<site>.json when
# there is one (fetch it from wherever your sites report it), else as a first sync.
# Exit 1 when any site would refuse the change or finds it invalid; the comment is
# written either way.
set -eu

base="${1:?usage: plan-changed-sites.sh BASE [OUT]}"
out="${2:-plan.md}"
state_dir="${RECONCILER_STATE_DIR:-.reconciler/state}"

changed=$(git diff --name-only "$base"...HEAD -- sites crds)
if printf '%s\n' "$changed" | grep -q '^crds/'; then
    sites=$(git ls-tree --name-only HEAD sites/ | sed 's|^sites/||')
else
    sites=$(printf '%s\n' "$changed" | sed -n 's|^sites/\([^/]*\)/.*|\1|p' | sort -u)
fi

status=0
{
    echo "## reconciler plan"
    echo
    if [ -z "$sites" ]; then
        echo "No site changes in this pull request."
    fi
} > "$out"
for site in $sites; do
    if ! git cat-file -e "HEAD:sites/$site/intent.yaml" 2>/dev/null; then
        printf '\n### site `%s`\n\nRemoved by this pull request (no intent.yaml at HEAD).\n' \
            "$site" >> "$out"
        continue
    fi
    echo >> "$out"
    reconciler plan --repo . --site "$site" --ref HEAD --state-dir "$state_dir" \
        >> "$out" || status=1
done
exit "$status"

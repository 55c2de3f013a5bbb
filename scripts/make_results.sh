#!/usr/bin/env bash
# Regenerates docs/results.md and docs/figures/ (issue 5: R-D evaluation of the shipped models).
#
#   scripts/make_results.sh                    # full protocol: 24 Kodak images, 500 and 2000 it (GPU)
#   KODAK=.kodak scripts/make_results.sh       # the same, continuing docs/results/full.jsonl (its
#                                              # records name the images .kodak/kodimNN.png)
#   PROFILE=reduced scripts/make_results.sh    # CPU-sized: 3 Kodak crops of 192x192, 100 / 300 it,
#                                              # and the protocol's 500 / 2000 it for atanh and SSL,
#                                              # 500 / 2000 it for the other methods (500 on every
#                                              # model, 2000 on the default one) and tau_max,
#                                              # 500 it for semi-multi-rate
#
# Every stage is one or more `sgacodec refine` calls appending to docs/results/$PROFILE.jsonl; rerunning
# continues where a stopped run was (records already there are skipped: a record's key holds the
# image path as given). STAGES="1 3" runs some stages only (the reduced profile's order is 9 first,
# whose records stages 1 and 6 copy: paper() below); PAGE_ONLY=1 just rewrites the page from
# the records. Before the page is written, the records of models no longer shipped (not in
# sgacodec/models/weights/manifest.json) and those superseded by a later record of their key are removed
# from both records files (make_results.py prune; not with CHECKPOINTS). LOG_ONLY=1 writes the
# stages' .cmd files and the page without running a command (for records made by the same command
# lines run elsewhere, e.g. split across machines). REDO_UNPROVEN=1 computes again the records that
# name no provenance (sgacodec refine --redo-unproven). RECORDS_FROM="a.jsonl b.jsonl" copies the
# records of those files that a stage's commands would make (same key) instead of computing them
# (sgacodec refine --records-from), e.g. a stage's command lines split across processes, each into
# its own records file; the stage's .cmd file says so in a comment. The page shows both profiles'
# records whatever PROFILE is. Each stage's command is kept in docs/results/$PROFILE.stageN.cmd
# and its command lines are quoted on the page next to the numbers they produced (comment lines
# there are not; the machine is in the records' provenance).
# Environment: PYTHON (default .venv/bin/python, else python3), KODAK (the Kodak folder),
# DEVICE (auto), CHECKPOINTS="a.pth b.pth c.pth" to evaluate checkpoints instead of the
# embedded models (lowest lambda first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
KODAK=${KODAK:-/work/shared/datasets/kodak}
PROFILE=${PROFILE:-full}
DEVICE=${DEVICE:-auto}
REC=docs/results/$PROFILE.jsonl
CMDS=docs/results/$PROFILE  # + .stageN.cmd: the commands of each stage
mkdir -p docs/results docs/figures

if [ "$PROFILE" = full ]; then
  IMAGES=("$KODAK"); CROP=(); SHORT=${SHORT:-500}; LONG=${LONG:-2000}
  ALL_SHORT_LONG=(--iterations $SHORT --iterations $LONG)
else
  IMAGES=("$KODAK/kodim04.png" "$KODAK/kodim15.png" "$KODAK/kodim23.png"); CROP=(--crop 192)
  SHORT=${SHORT:-100}; LONG=${LONG:-300}
  ALL_SHORT_LONG=(--iterations $SHORT)
fi

# The models: every shipped quality (or CHECKPOINTS), the default one, and lambdas for the
# semi-multi-rate study, from the manifest.
read -r -a MODELS <<< "$($PY scripts/make_results.py models)"
read -r -a DEFAULT <<< "$($PY scripts/make_results.py default-model)"
read -r -a SEMI <<< "$($PY scripts/make_results.py semi-lambdas --profile "$PROFILE")"

run() {  # log the command (a stage's first run starts its file), then run it; a failed stage
  # does not stop the others
  [ -n "${REDO_UNPROVEN:-}" ] && set -- "$@" --redo-unproven
  local line; line=$(echo "sgacodec refine $* --records $REC" | sed "s#$KODAK#\$KODAK#g")
  if [ "${LOGGED_STAGE:-}" = "$stage" ]; then echo "$line" >> "$CMDS.stage$stage.cmd"
  else
    echo "$line" > "$CMDS.stage$stage.cmd"; LOGGED_STAGE=$stage
    if [ -n "${RECORDS_FROM:-}" ]; then
      echo "# run with --records-from $RECORDS_FROM: records made by these command lines elsewhere" \
        "(split across processes or machines) were copied, not computed again; each record's" \
        "provenance names where it was made" >> "$CMDS.stage$stage.cmd"
    fi
  fi
  [ -n "${LOG_ONLY:-}" ] && return 0
  local f; for f in ${RECORDS_FROM:-}; do set -- "$@" --records-from "$f"; done
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} $PY -m sgacodec refine "$@" --records "$REC" --device "$DEVICE" \
    || echo "stage failed: $*" >&2
}

paper() {  # stages 1 to 8 study the paper's schedule (the default is the budget-aware one since
  # issue 17; a paper-schedule record's key is what it always was, so these resume). Stage 9's
  # records (the profile's anytime files) hold some of the same measurements under the same keys
  # (none, atanh and SSL at 100, 500 and 2000 iterations of the paper's schedule): those are copied,
  # not computed again (sgacodec refine --records-from)
  local from=() f
  for f in docs/results/$PROFILE-anytime-*.jsonl; do [ -e "$f" ] && from+=(--records-from "$f"); done
  run "$@" --schedule paper ${from[@]+"${from[@]}"}
}

if [ -z "${PAGE_ONLY:-}" ]; then
  # the reduced profile runs stage 9 first: stages 1 and 6 then copy its records (paper())
  if [ "$PROFILE" = full ]; then ORDER="1 2 3 4 5 6 7 8 9"; else ORDER="9 1 2 3 4 5 6 7 8"; fi
  for stage in ${STAGES:-$ORDER}; do
    echo "== stage $stage ($(date -u +%H:%M:%S))" >&2
    case $stage in
      1)  # the main R-D comparison over all shipped models, with classical codecs
        paper "${IMAGES[@]}" "${CROP[@]}" "${MODELS[@]}" --method none --method atanh --method ssl \
          "${ALL_SHORT_LONG[@]}" --classical jpeg,webp,avif ;;
      2)  # the other rounding methods
        if [ "$PROFILE" = full ]; then M=("${MODELS[@]}"); else M=("${DEFAULT[@]}"); fi
        paper "${IMAGES[@]}" "${CROP[@]}" "${M[@]}" --method none --method ste --method uniform \
          --method linear --method cosine --method linear3 --method ssl3 "${ALL_SHORT_LONG[@]}" ;;
      3)  # sensitivity to tau_max
        if [ "$PROFILE" = full ]; then M=("${MODELS[@]}"); IT=$LONG; else M=("${DEFAULT[@]}"); IT=$SHORT; fi
        paper "${IMAGES[@]}" "${CROP[@]}" "${M[@]}" --method none --method atanh --method ssl \
          --iterations $IT --tau-max 0.2 --tau-max 0.5 --tau-max 1.0 ;;
      4)  # semi-multi-rate: the default model at other inference lambdas
        if [ "$PROFILE" = full ]; then IT=$LONG; else IT=$SHORT; fi
        paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method ssl --iterations $IT "${SEMI[@]}" ;;
      5)  # longer refinement (the reduced profile: 300 iterations; the full one has 2000 in stage 1)
        if [ "$PROFILE" != full ]; then
          paper "${IMAGES[@]}" "${CROP[@]}" "${MODELS[@]}" --method none --method atanh --method ssl \
            --iterations $LONG
        fi ;;
      6)  # the reduced profile at the protocol's iteration counts, for the main comparison only
        if [ "$PROFILE" != full ]; then
          paper "${IMAGES[@]}" "${CROP[@]}" "${MODELS[@]}" --method none --method atanh --method ssl \
            --iterations 500 --iterations 2000
        fi ;;
      7)  # the reduced profile's other studies (stages 2 to 4) at the protocol's 500 iterations
        if [ "$PROFILE" != full ]; then
          paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method none --method ste --method uniform \
            --method linear --method cosine --method linear3 --method ssl3 --iterations 500
          paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method none --method atanh --method ssl \
            --iterations 500 --tau-max 0.2 --tau-max 0.5 --tau-max 1.0
          paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method ssl --iterations 500 "${SEMI[@]}"
        fi ;;
      8)  # the reduced profile's other rounding methods on every model at 500 iterations (for their
          # BD-rates), and on the default model at 2000 with tau_max
        if [ "$PROFILE" != full ]; then
          paper "${IMAGES[@]}" "${CROP[@]}" "${MODELS[@]}" --method none --method ste --method uniform \
            --method linear --method cosine --method linear3 --method ssl3 --iterations 500
          paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method none --method ste --method uniform \
            --method linear --method cosine --method linear3 --method ssl3 --iterations 2000
          paper "${IMAGES[@]}" "${CROP[@]}" "${DEFAULT[@]}" --method none --method atanh --method ssl \
            --iterations 2000 --tau-max 0.2 --tau-max 0.5 --tau-max 1.0
        fi ;;
      9)  # anytime refinement: the gain against the iteration count for the paper's schedule and
          # the budget-aware one, SSL and atanh, every model. Each model's records go to a file of
          # their own (docs/results/$PROFILE-anytime-MODEL.jsonl) so that JOBS models run at once.
          # The budget schedule at 2000 iterations is the paper's run (tests/test_rounding.py), so
          # it is not run twice.
        BUDGET_IT=(--iterations 25 --iterations 50 --iterations 100 --iterations 200 --iterations 500)
        PAPER_IT=("${BUDGET_IT[@]}" --iterations 2000)
        for ((k = 0; k < ${#MODELS[@]}; k += 2)); do
          m=("${MODELS[k]}" "${MODELS[k+1]}")
          (
            tag=$(basename "${m[1]}"); tag=${tag%%.*}
            REC=docs/results/$PROFILE-anytime-${m[0]#--}-$tag.jsonl
            LOGGED_STAGE="" stage=9-$tag
            # one method at a time, SSL first: a run cut short still holds whole curves
            run "${IMAGES[@]}" "${CROP[@]}" "${m[@]}" --method none --method ssl \
              --schedule paper "${PAPER_IT[@]}"
            run "${IMAGES[@]}" "${CROP[@]}" "${m[@]}" --method ssl --schedule budget "${BUDGET_IT[@]}"
            run "${IMAGES[@]}" "${CROP[@]}" "${m[@]}" --method atanh --schedule paper "${PAPER_IT[@]}"
            run "${IMAGES[@]}" "${CROP[@]}" "${m[@]}" --method atanh --schedule budget "${BUDGET_IT[@]}"
          ) &
          while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do sleep 5; done
        done
        wait ;;
    esac
  done
fi
$PY scripts/make_results.py prune
$PY scripts/make_results.py page --profile "$PROFILE"

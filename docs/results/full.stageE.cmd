sgacodec refine .kodak --quality 1 --quality 2 --quality 3 --eval-every 10 --method none --classical jpeg,webp,avif --records docs/results/full.jsonl
# CPU, after the H100 stages: the classical codecs at the rates of the 'none' records (resumed, not recomputed: 72 resumed, 216 classical records computed).

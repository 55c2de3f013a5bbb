sgacodec refine .kodak --quality 1 --quality 2 --quality 3 --eval-every 10 --records docs/results/full.jsonl --device cuda --method none --method ssl --iterations 500 --iterations 2000
# H100 session, from the repo root (.kodak = the 24 Kodak images). Stopped by its 330 s limit during msh-q2's ssl 2000 (18 of 24 images done).

sgacodec refine .kodak --quality 1 --quality 2 --quality 3 --eval-every 10 --records docs/results/full.jsonl --device cuda --method atanh --iterations 2000
# H100 session. Stopped by the call's time limit during msh-q3 (q1 and q2 complete; no msh-q3 atanh record).

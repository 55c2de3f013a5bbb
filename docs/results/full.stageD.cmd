sgacodec refine .kodak --quality 2 --quality 3 --eval-every 10 --records docs/results/full.jsonl --device cuda --method none --method ssl --iterations 2000
# H100 session, resuming A: finished msh-q2's last 6 images (ssl 2000) and msh-q3's none records; stopped during msh-q3's ssl (no msh-q3 ssl record).

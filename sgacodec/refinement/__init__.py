"""SGA+ refinement of one image's latents (docs/method.md):

    rounding   relaxed rounding: SGA's atanh, linear, cosine, SSL; two- and three-class
    schedules  the temperature, the step size, the budget plan, the "auto" rule, the CPU budget
    loop       refine_latents: Adam over (y, z), the true loss, the best iterate
    speed      torch.compile with eager fallback, TF32 and bf16, channels_last
    tiled      a large image's loss and gradient computed tile by tile, in bounded memory
"""

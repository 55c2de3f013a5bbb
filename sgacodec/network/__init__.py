"""The coding network and its numerics: CompressAI's models as sgacodec computes with them.

    compressai_import  importing CompressAI's models, entropy models and coder, and nothing else
    compressai_zoo     its zoo: architecture classes, weight URLs, pretrained networks
    latent_model       LatentModel: analysis, hyperprior, rounding to the coder's grid, coding
    checks             quantiles and latents the coder cannot take, refused before use
    coding_net         the network both sides of a file compute (float64 h_s, g_s and tables)
    deconv             float64 transposed convolutions by kernel taps (the coding network's g_s)
    table_cache        the float64 coder tables cached in the user's cache folder
    training           what training needs: a new model, its loss, the bottleneck's training forward
    tiling             the transforms run tile by tile, each tile's halo derived from the layers
    grid               the tile grid of an image (torch-free geometry)
    streams            latents into rANS strings and back, per tile; untrusted strings decoded safely

These are the only modules that import CompressAI or use its internals (tests/test_architecture.py).
"""

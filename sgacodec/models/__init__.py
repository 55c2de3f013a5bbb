"""Models: which ones exist, and loading them (each module imports torch only when it loads).

    zoo_table    CompressAI's zoo: names, qualities, lambdas, published Kodak figures (no torch)
    loaded       LoadedModel, and ModelId: the identity a file records
    loading      load_model (what the user asks for) and load_for_bitstream (what a file names)
    checkpoints  local state dicts, read without unpickling code; architecture inference, checks
    embedded     the shipped models (weights/ and its manifest)
    zoo          CompressAI's pretrained models through its zoo and torch.hub's cache
    family       rate points among which encoding to a target chooses
    messages     one-line wording of loading failures
"""

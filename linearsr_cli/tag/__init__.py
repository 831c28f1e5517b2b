"""TAG guidance: object tags from the LR image (or the user) -> cross-attention tokens.

config.py    TagConfig, DEFAULT_TAGS, tag_config_for (--tags auto|off|"a, b")
guidance.py  ResolvedTags, TagGuidance: what `upscale` uses (sources + encoding)
tagger.py    EfficientNet-Lite0 ImageNet tagger (offline), visual_token for the ablation
encoder.py   all-MiniLM-L6-v2 tag encoder (offline): tag lists -> (B, M, 384) + mask
sources.py   --tags text, IMAGE.tags sidecars;  metadata.py  XMP dc:subject / IPTC 2:25
training.py  TrainingTags (the tagger + encoder on training crops), make_tag_source (the loop's tags)
labels.py    our cleaned ImageNet label table;  run.py  `linearsr tag`
Heavy models load lazily: importing this package loads no weights.
"""

"""Training and evaluation data: dataset readers (``data.formats``) and the synthetic occlusion
generator (``data.synthetic``).

Sub-packages are imported explicitly (``from hmr_ros.data.synthetic import SyntheticGenerator``)
so that importing ``hmr_ros.data`` itself stays free of torch.
"""

__all__: list = []

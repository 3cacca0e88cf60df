"""The spatial layer (paper 3.2): masks -> polygons -> pairwise relations -> the T_i text."""

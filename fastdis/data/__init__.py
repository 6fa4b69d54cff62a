"""Ground-truth data sets (issue 3): loaders for the real files, offline look-alikes."""

"""Lava Processes of an EP-CNN (``processes``) and their numpy ProcessModels (``models``).

This package holds only these two modules: lava's compiler discovers ProcessModels by
executing every module in the directory of a Process's module.
"""

"""The built-in plugins' network code (torch, torchvision), imported inside their ``build`` functions only.

A plugin module declares its specs and is imported by every ``lrbench`` command, ``--help`` included; the
networks load when a command builds one, so the command line starts without torch.
"""

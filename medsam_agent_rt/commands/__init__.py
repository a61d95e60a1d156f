"""One module per ``medsam-agent`` sub-command (see ``medsam_agent_rt.cli``)."""

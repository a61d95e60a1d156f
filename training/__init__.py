"""Training (installed as ``medsam_agent_rt.training``): expert trajectories, SFT, multi-turn
GRPO with outcome and process rewards, presets."""

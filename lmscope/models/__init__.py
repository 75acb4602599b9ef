"""Models lmscope ships as package data: demo_t5/ is made by scripts/train_demo_t5.py."""

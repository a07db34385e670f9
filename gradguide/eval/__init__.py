"""gradguide.eval"""

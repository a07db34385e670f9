"""gradguide.infer"""

"""gradguide.train"""

"""gradguide.data"""

"""tfnas.tasks"""

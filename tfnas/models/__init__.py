"""tfnas.models"""

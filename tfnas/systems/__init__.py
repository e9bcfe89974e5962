"""tfnas.systems"""

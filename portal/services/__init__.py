"""Services: every write in the portal goes through a function here (HackSoft style).

Browser views, API views, admin actions and management commands call the same functions.
"""

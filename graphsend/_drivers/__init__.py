"""Drivers: run operations on the native core — Client (per-thread handles), send_many's
Scheduler (one multi), AsyncClient (the caller's event loop).
"""

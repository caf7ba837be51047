"""Operations: each Graph action as data (method, path, body, success statuses, answer → result,
whether repeating it can duplicate a mail), the message model, and upload sessions as steps.
"""

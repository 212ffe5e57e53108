"""What a MariaDB dump's lock watch prints of another session's statement."""

from dbpipe.engines.mysql.lockwatch import shown_statement


def test_shown_statement_leaves_values_out():
    assert shown_statement("ALTER USER x IDENTIFIED BY 'pa''ss\\'word'") == "ALTER USER x IDENTIFIED BY ?"
    assert shown_statement('UPDATE oc_users SET pw = "h\\"ash"\n  WHERE uid = 1') == \
        "UPDATE oc_users SET pw = ? WHERE uid = 1"
    assert shown_statement(None) == "-"
    assert len(shown_statement("SELECT " + "a, " * 100)) == 80

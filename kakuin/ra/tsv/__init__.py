"""TSV applications as the UPKI service defines them (one request a line, tab
separated, no quoting, Shift_JIS or UTF-8, CRLF or LF).

``formats``: the column specifications, as data; ``parse``: decoding and
splitting with row/column errors; ``check``: one checker per kind producing
the checked row models; ``apply``: turning checked rows into issuance,
revocation and EAB credentials; ``make``: the TSV-making tool (from a CSR).
"""

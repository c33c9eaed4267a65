"""The certificate authority: key stores, hierarchy, issuance pipeline, linting.

Only this package ever touches a CA private key. It signs only what was first
recorded in the store (see ``issuer``)."""

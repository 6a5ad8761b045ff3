"""The inverse-design pipeline: generate → screen → QE DFT-PT (+ hull) → builders, as jobflow
Flows (:mod:`.maker`, :mod:`.jobs`), the rules that pick and count its candidates
(:mod:`.funnel`, :mod:`.chemical_space`) and the local electron-phonon run of one structure
(:mod:`.epc`). How a flow is executed (locally, FireWorks) is :mod:`sc_inverse.execution`.
"""

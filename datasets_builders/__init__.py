"""Dataset builders: any source -> schema rows (DESIGN.md section 3) as parquet + dataset card.

Lives at the top of the repository and ships in the wheel as `trl_mig.datasets_builders`, so `trl-mig build` works
for pip users. Builders import `trl_mig.geometry` and `trl_mig.parsing` (never the other way round).
"""

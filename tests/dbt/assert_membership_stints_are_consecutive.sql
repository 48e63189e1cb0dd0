{#-
    A member's stints in a clan are numbered 1..n without gaps, follow each
    other in time without overlapping (stint k + 1 joins at or after stint
    k left), and only the last one may be open. Returns the offending
    stints.
-#}

with

stints as (

    select
        clan_tag,
        player_tag,
        stint_number,
        is_current,
        joined_at,
        left_at,
        row_number() over member_stints as expected_number,
        lead(joined_at) over member_stints as next_joined_at,
        count(*) over (
            partition by clan_tag, player_tag
        ) as stint_count

    from {{ ref('membership_stints') }}
    window member_stints as (
        partition by clan_tag, player_tag order by stint_number
    )

)

select *
from stints
where
    stint_number <> expected_number
    or next_joined_at < left_at
    or (next_joined_at is not null and left_at is null)
    or (is_current and stint_number <> stint_count)

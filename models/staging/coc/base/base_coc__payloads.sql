with

source as (

    select * from {{ source('coc', 'payloads') }}

),

renamed as (

    select
        payload_hash,
        body,
        byte_size,
        first_seen_at

    from source

)

select * from renamed
